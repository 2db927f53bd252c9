#include "train/dist.h"

// The C API only: Open MPI's deprecated C++ bindings would need libmpi_cxx.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace fathom::train {

namespace {

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

// MPI counts are int: large buffers go in chunks.
template <class T>
void allreduce(T* v, int64_t n, MPI_Datatype type) {
  constexpr int64_t kChunk = int64_t(1) << 28;
  for (int64_t off = 0; off < n; off += kChunk) {
    const int c = int(std::min(kChunk, n - off));
    if (MPI_Allreduce(MPI_IN_PLACE, v + off, c, type, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
      fail("MPI: all-reduce failed");
  }
}

}  // namespace

Dist::Dist() {
  if (!launched_by_mpi()) return;
  int init = 0;
  MPI_Initialized(&init);
  if (!init && MPI_Init(nullptr, nullptr) != MPI_SUCCESS) fail("MPI: cannot initialize");
  mpi_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

Dist::~Dist() {
  if (!mpi_) return;
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

void Dist::sum(float* v, int64_t n) const {
  if (size_ > 1) allreduce(v, n, MPI_FLOAT);
}
void Dist::sum(double* v, int64_t n) const {
  if (size_ > 1) allreduce(v, n, MPI_DOUBLE);
}
void Dist::sum(int64_t* v, int64_t n) const {
  if (size_ > 1) allreduce(v, n, MPI_INT64_T);
}

bool Dist::any(bool v) const {
  if (size_ <= 1) return v;
  int x = v ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return x != 0;
}

void Dist::barrier() const {
  if (size_ > 1) MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace fathom::train
