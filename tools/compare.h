/* compare.h: `swiftmoe compare`: trains the contenders on one config, data
 * and seed (swiftmoe, static, capacity 1.0 and 1.25, symi 1.0), records
 * their real loss curves, drops and imbalance, projects each one's step time
 * on the scenarios from its own placement log (sim.h), adds flexmoe K = 10,
 * 50, 100 and eplb on the dropless curve, and reports steps and projected
 * minutes to a target loss: OUT/table.md, OUT/summary.json and the plots. */
#ifndef SMOE_COMPARE_H
#define SMOE_COMPARE_H

/* argv: the arguments after "compare"; self: this program, to run
 * `self train --nproc G ...` for each contender. */
int smoe_compare_command(int argc, char **argv, char *self);

#endif
