/* swiftmoe: the command-line front end. It parses arguments and calls the
 * engine; nothing else. One table per command drives parsing and --help.
 *
 * Exit codes: 0 success; 1 the run failed (data, I/O, divergence);
 * 2 bad usage: unknown command or option, bad --set, bad config file. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "train.h"

#define SMOE_VERSION "0.1.0"

typedef struct {
  const char *name; /* "--config" */
  const char *arg;  /* metavariable, NULL for a flag */
  const char *help;
} option_t;

typedef struct {
  const char *name, *summary;
  const option_t *options;
  int n_options;
  int (*run)(int argc, char **argv);
} command_t;

static int usage_error(const char *cmd, const char *fmt, const char *what) {
  fprintf(stderr, "swiftmoe%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (see 'swiftmoe%s%s --help')\n", cmd ? " " : "", cmd ? cmd : "");
  return 2;
}

static void print_options(const option_t *o, int n) {
  for (int i = 0; i < n; i++) {
    char left[64];
    snprintf(left, sizeof left, "%s%s%s", o[i].name, o[i].arg ? " " : "", o[i].arg ? o[i].arg : "");
    printf("  %-28s %s\n", left, o[i].help);
  }
}

/* Matches argv[*i] against the table; returns the option index, -1 if none.
 * Sets *value for options with an argument ("--x V" or "--x=V"). */
static int match_option(const option_t *o, int n, int argc, char **argv, int *i,
                        const char **value, const char *cmd, int *rc) {
  const char *a = argv[*i];
  for (int k = 0; k < n; k++) {
    size_t len = strlen(o[k].name);
    if (strncmp(a, o[k].name, len) != 0 || (a[len] != '\0' && a[len] != '=')) continue;
    if (!o[k].arg) {
      if (a[len] == '=') *rc = usage_error(cmd, "option %s takes no value", o[k].name);
      return k;
    }
    if (a[len] == '=') {
      *value = a + len + 1;
    } else if (*i + 1 < argc) {
      *value = argv[++*i];
    } else {
      *rc = usage_error(cmd, "option %s needs a value", o[k].name);
    }
    return k;
  }
  *rc = usage_error(cmd, "unknown option '%s'", a);
  return -1;
}

/* ------------------------------------------------------------------ train */

static const option_t train_options[] = {
    {"--config", "FILE", "INI config (default: the built-in defaults = configs/tiny.ini)"},
    {"--set", "SECTION.KEY=VALUE", "override one key; repeatable; applied after --config"},
    {"--out", "DIR", "run folder (default: runs/<UTC date-time>)"},
    {"--help", NULL, "show this help"},
};
enum { TRAIN_CONFIG, TRAIN_SET, TRAIN_OUT, TRAIN_HELP };
#define N_TRAIN_OPTIONS ((int)(sizeof train_options / sizeof train_options[0]))

static int cmd_train(int argc, char **argv) {
  const char *config_path = NULL, *out = NULL;
  const char **sets = xcalloc((size_t)argc, sizeof(char *));
  int n_sets = 0, rc = 0;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *value = NULL;
    int k = match_option(train_options, N_TRAIN_OPTIONS, argc, argv, &i, &value, "train", &rc);
    if (rc) break;
    if (k == TRAIN_CONFIG) config_path = value;
    if (k == TRAIN_SET) sets[n_sets++] = value;
    if (k == TRAIN_OUT) out = value;
    if (k == TRAIN_HELP) {
      printf("usage: swiftmoe train [--config FILE] [--set SECTION.KEY=VALUE ...] [--out DIR]\n\n"
             "Trains a Mixtral-architecture MoE on this machine. The run folder gets\n"
             "config.ini (the resolved config), metrics.jsonl (one line per step) and\n"
             "summary.json.\n\noptions:\n");
      print_options(train_options, N_TRAIN_OPTIONS);
      free(sets);
      return 0;
    }
  }
  smoe_config_t c;
  smoe_err_t err = {{0}};
  smoe_config_defaults(&c);
  if (rc == 0 && config_path && smoe_config_load(&c, config_path, &err) != 0) rc = 2;
  for (int i = 0; rc == 0 && i < n_sets; i++)
    if (smoe_config_set(&c, sets[i], &err) != 0) rc = 2;
  if (rc == 0 && smoe_config_validate(&c, &err) != 0) rc = 2;
  free(sets);
  if (rc) {
    if (err.msg[0]) fprintf(stderr, "swiftmoe train: %s\n", err.msg);
    return rc;
  }
  char default_out[64];
  if (!out) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(default_out, sizeof default_out, "runs/%Y%m%d-%H%M%S", &tm);
    out = default_out;
  }
  smoe_train_result_t res;
  if (smoe_train(&c, out, &res, &err) != 0) {
    fprintf(stderr, "swiftmoe train: %s\n", err.msg);
    return 1;
  }
  return 0;
}

/* ----------------------------------------------------------------- config */

static const option_t config_options[] = {
    {"--markdown", NULL, "print the key reference as a markdown table instead"},
    {"--help", NULL, "show this help"},
};

static int cmd_config(int argc, char **argv) {
  int markdown = 0, rc = 0;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *value = NULL;
    int k = match_option(config_options, 2, argc, argv, &i, &value, "config", &rc);
    if (k == 0) markdown = 1;
    if (k == 1) {
      printf("usage: swiftmoe config [--markdown]\n\nPrints the built-in default config as INI "
             "(every key, documented).\n\noptions:\n");
      print_options(config_options, 2);
      return 0;
    }
  }
  if (rc) return rc;
  smoe_config_t c;
  smoe_config_defaults(&c);
  if (markdown)
    smoe_config_write_markdown(stdout);
  else
    smoe_config_write(&c, stdout);
  return 0;
}

/* ------------------------------------------------------------------- main */

static const command_t commands[] = {
    {"train", "train a model (single process on the CPU for now)", train_options, N_TRAIN_OPTIONS,
     cmd_train},
    {"config", "print the default config with every key documented", config_options, 2,
     cmd_config},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void main_help(void) {
  printf("swiftmoe %s: a training engine for Mixture-of-Experts transformers\n\n"
         "usage: swiftmoe COMMAND [options]\n\ncommands:\n",
         SMOE_VERSION);
  for (int i = 0; i < N_COMMANDS; i++) printf("  %-10s %s\n", commands[i].name, commands[i].summary);
  printf("\n  --help     show this help\n  --version  print the version\n\n"
         "'swiftmoe COMMAND --help' shows a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    main_help();
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    main_help();
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("swiftmoe %s (%s)\n", SMOE_VERSION, SMOE_REAL_NAME);
    return 0;
  }
  for (int i = 0; i < N_COMMANDS; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
  return usage_error(NULL, "unknown command '%s'", argv[1]);
}
