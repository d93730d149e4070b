/* data.h: token data (byte-level text or llm.c .bin) and (seed, step) sampling.
 *
 * A dataset is two token arrays, train and validation.
 *
 * Text: one file, or every regular file under a folder, read in sorted name
 * order, recursing into subfolders (sorted too). In a folder, names starting
 * with '.', symlinks, and X.dat / X.u8 beside a file X (fortune's strfile
 * index and UTF-8 alias) are skipped. The default corpus folder is read
 * without recursion (so fortunes-off's off/ subfolder is never read). Tokens
 * are bytes (vocab 256). A file holding a NUL byte, or more than 1% control
 * bytes (below 0x20 other than \t \n \v \f \r ESC, or 0x7f), is an error.
 *
 * Records: a file is split at lines that are exactly "%" (or "%\r"), the
 * fortune format; a record is the bytes between two such lines (its last
 * line's '\n' included), empty records are dropped. A record goes to
 * validation when mix64(FNV-1a-64(its bytes)) % 1e6 < val_fraction * 1e6, so
 * the split depends on neither file order nor size, and equal records land
 * together. Each record is emitted as its bytes, a '\n' if it lacks one, then
 * "%\n": a split reads as a fortune file ("text\n%\ntext\n%\n").
 * A file without "%" lines is split into paragraphs instead (a paragraph ends
 * with its run of blank lines), hashed the same way and emitted verbatim (no
 * "%" lines added). If its paragraphs all land in one split, that file is
 * split by position instead: the last ceil(val_fraction * size) bytes are
 * validation. Text a file adds to a split always ends in '\n' (one is added
 * where it would not).
 *
 * An llm.c .bin file (path ending in .bin, or any file starting with the
 * magic; int32 little-endian header of 256 words: magic 20240520, version 1,
 * token count; then exactly that many uint16 tokens) is split by position: the
 * last ceil(val_fraction * count) tokens, at least seq_len + 1, are
 * validation; vocab_size is the largest token + 1. A .bin inside a folder is
 * an error. */
#ifndef SMOE_DATA_H
#define SMOE_DATA_H

#include "common.h"

#define SMOE_DEFAULT_CORPUS "/usr/share/games/fortunes"
#define SMOE_LLMC_MAGIC 20240520

typedef struct {
  int32_t *train; /* (n_train,) token ids */
  size_t n_train;
  int32_t *val;   /* (n_val,) token ids */
  size_t n_val;
  int vocab_size; /* 256 for text; for .bin, max token id + 1 */
  int n_files;    /* files read */
} smoe_data_t;

/* Loads path ("" = SMOE_DEFAULT_CORPUS; a path given directly may be a
 * symlink). val_fraction must be in (0, 1). Errors (missing path, empty
 * folder, non-text file, bad .bin magic/version/size) name the file. Both
 * splits must hold at least one window of seq_len + 1 tokens. Prints nothing.
 * Returns 0, or -1 with err set and *d zeroed (nothing left allocated).
 * On success d owns its arrays; release with smoe_data_free. */
int smoe_data_load(smoe_data_t *d, const char *path, double val_fraction, int seq_len,
                   smoe_err_t *err);
void smoe_data_free(smoe_data_t *d);

/* The whole of one file as tokens, in order, with no split: bytes of a text
 * file, or the tokens of an llm.c .bin (same checks as above). *tokens is
 * malloc'ed (caller frees). For `swiftmoe eval`. Returns 0 or -1. */
int smoe_data_load_file(int32_t **tokens, size_t *n_tokens, int *vocab_size, const char *path,
                        smoe_err_t *err);

/* Fills out (n_windows, seq_len + 1) with the windows of global step `step`,
 * windows [first, first + n_windows) of the step's global_batch_size windows.
 * A window's start depends only on (seed, step, window index), never on how
 * the batch is split over processes, and is uniform over every valid start
 * 0 .. n_train - seq_len - 1. seq_len must not exceed the one given to load. */
void smoe_data_train_batch(const smoe_data_t *d, uint64_t seed, int64_t step, int first,
                           int n_windows, int seq_len, int32_t *out);

/* Validation window i: the i-th consecutive non-overlapping window of the
 * validation split (wrapping around if i exceeds the count). */
void smoe_data_val_window(const smoe_data_t *d, int64_t i, int seq_len, int32_t *out);

/* Number of non-overlapping validation windows. */
int64_t smoe_data_val_windows(const smoe_data_t *d, int seq_len);


#endif
