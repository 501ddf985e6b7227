"""mpirun.py: how the dist suite starts Open MPI worlds on this machine: root allowed
(CI runs as root), more ranks than cores allowed, no binding, one engine thread per rank,
shared-memory transport without the ptrace-based single copy (refused in containers)."""
import os
import subprocess

ENV = dict(os.environ,
           OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_btl_vader_single_copy_mechanism="none",
           OMPI_MCA_rmaps_base_oversubscribe="1",
           OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def mpirun(np, argv, timeout=600, extra=()):
    """Runs argv on np ranks; returns the CompletedProcess (output captured as text)."""
    cmd = ["mpirun", "-np", str(np), "--bind-to", "none", *extra, *argv]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
