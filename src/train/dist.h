#pragma once
// Data-parallel training over processes with MPI. A process started by `mpirun` joins the
// world; one started on its own runs alone without touching MPI, so single-process use
// needs no MPI runtime at all.
#include <cstdint>

namespace fathom::train {

class Dist {
 public:
  Dist();   // joins MPI when launched under mpirun (Open MPI, MPICH or a PMI launcher)
  ~Dist();  // leaves it
  Dist(const Dist&) = delete;
  Dist& operator=(const Dist&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }

  // In-place sums over every process (no-ops alone). Every rank reduces in the same order,
  // so all end with identical values.
  void sum(float* v, int64_t n) const;
  void sum(double* v, int64_t n) const;
  void sum(int64_t* v, int64_t n) const;
  // Whether any process says yes (a rank that fails tells the others to stop).
  bool any(bool v) const;
  void barrier() const;

 private:
  int rank_ = 0, size_ = 1;
  bool mpi_ = false;
};

}  // namespace fathom::train
