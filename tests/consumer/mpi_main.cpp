// Uses the installed mpi component: MPI started (alone, or under mpirun), an ordered sum.
#include <netsplit/mpi.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  netsplit::mpi::environment env(argc, argv);
  netsplit::mpi::communicator world;
  std::vector<double> v{1.0, 2.0};
  world.allreduce_sum(v);
  std::printf("mpi consumer: rank %d of %d, sum %g %g\n", world.rank(), world.size(), v[0], v[1]);
  return v[0] == world.size() && v[1] == 2.0 * world.size() ? 0 : 1;
}
