/* backend.c: training.device to an op table (backend.h). */
#include <string.h>

#include "backend.h"
#include "comm.h"
#ifdef SMOE_WITH_CUDA
#include "cuda_ops.h"
#endif

#ifdef SMOE_WITH_CUDA
static smoe_comm_t *fatal_comm;

/* a CUDA error in a step: the message is printed; the whole job ends */
static void cuda_fatal(const char *msg) {
  (void)msg; /* printed already */
  if (!fatal_comm) return;
  fprintf(stderr, "swiftmoe: [rank %d] the CUDA error above ends the job\n",
          smoe_comm_rank(fatal_comm));
  smoe_comm_abort(fatal_comm, 1);
}
#endif

int smoe_backend_open(const char *device, const char *dtype, smoe_comm_t *comm,
                      const smoe_ops_t **ops, smoe_err_t *err) {
  *ops = NULL;
  const int bf16 = strcmp(dtype, "bf16") == 0;
  if (bf16 && strcmp(device, "cuda") != 0)
    return smoe_fail(err, "training.dtype = bf16 needs training.device = cuda (here: %s)", device);
#ifdef SMOE_REAL_DOUBLE
  if (bf16)
    return smoe_fail(err, "training.dtype = bf16: this is the double build (swiftmoe_f64); use "
                          "swiftmoe");
#endif
  if (strcmp(device, "cpu") == 0) *ops = &smoe_ops_cpu;
  if (strcmp(device, "guard") == 0) *ops = &smoe_ops_guard;
  if (strcmp(device, "cuda") == 0) {
#ifdef SMOE_WITH_CUDA
    char why[256];
    if (!smoe_cuda_available(smoe_comm_node_rank(comm), why, sizeof why))
      return smoe_fail(err, "training.device = cuda on rank %d: %s", smoe_comm_rank(comm), why);
    fatal_comm = comm;
    smoe_cuda_set_fatal_hook(cuda_fatal);
    smoe_cuda_set_bf16(bf16);
    *ops = &smoe_ops_cuda;
#else
    return smoe_fail(err,
                     "training.device = cuda: this swiftmoe was built without CUDA (no nvcc was "
                     "found, or -DSMOE_CUDA=OFF); rebuild with nvcc on PATH or "
                     "-DSMOE_CUDA=ON, or use training.device = cpu");
#endif
  }
  if (!*ops)
    return smoe_fail(err, "training.device = '%s' is not a device (allowed: cpu cuda guard)",
                     device);
  smoe_comm_set_backend(comm, *ops);
  return 0;
}

void smoe_backend_describe(const smoe_ops_t *ops, char *out, size_t len) {
#ifdef SMOE_WITH_CUDA
  if (ops == &smoe_ops_cuda) {
    smoe_cuda_describe(out, len);
    return;
  }
#endif
  snprintf(out, len, "%s", ops == &smoe_ops_guard ? "the CPU's ops on guarded memory" : "CPU");
}
