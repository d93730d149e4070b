/* loop.c (being written) */
