/* ckpt_cmd.h: `swiftmoe ckpt ls|verify|plans|replay`, inspecting a run's state stores. */
#ifndef SMOE_CKPT_CMD_H
#define SMOE_CKPT_CMD_H

/* argv: the arguments after "ckpt". Returns the exit code. */
int smoe_ckpt_command(int argc, char **argv);

#endif
