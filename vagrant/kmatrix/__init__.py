"""The kernel matrix: boots distribution kernels under qemu and runs the
kernel test tier in each (vagrant/kernel-matrix is the command)."""
