/* ckpt.c (being written) */
