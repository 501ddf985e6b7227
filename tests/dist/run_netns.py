"""run_netns.py: two "hosts" on one machine. Two network namespaces joined by a veth pair
(addresses 10.200.N.1 and 10.200.N.2, used only inside them), mpirun started in the
first with --host naming both addresses and a launcher agent (plm_rsh_agent) that enters
the second namespace where ssh would log in, Open MPI's TCP transport restricted to that
subnet. A 2-rank fit of sgdrd-worker must finish with one rank on each address, and the
veth must have carried at least the gradient bytes the world event reports. Needs root
(ip netns); exits 77 (skipped) where namespaces cannot be made.

usage: /usr/bin/python3 run_netns.py SGDRD_WORKER_EXE
"""
import json
import os
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from mpirun import ENV  # noqa: E402
from test_worker import events, spec, write_subset  # noqa: E402

SUBNET = 200 + os.getpid() % 50  # 10.200.0.0/16 is ours: one /24 per run


def sh(*cmd, ns=None):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def setup(tag):
    ns = [f"sgdrd-{tag}-a", f"sgdrd-{tag}-b"]
    veth = [f"sg{tag}a", f"sg{tag}b"]
    addr = [f"10.200.{SUBNET}.1", f"10.200.{SUBNET}.2"]
    for n in ns:
        sh("ip", "netns", "add", n)
    sh("ip", "link", "add", veth[0], "netns", ns[0], "type", "veth", "peer", "name", veth[1],
       "netns", ns[1])
    for i in range(2):
        sh("ip", "addr", "add", addr[i] + "/24", "dev", veth[i], ns=ns[i])
        sh("ip", "link", "set", veth[i], "up", ns=ns[i])
        sh("ip", "link", "set", "lo", "up", ns=ns[i])
    return ns, veth, addr


def teardown(ns):
    for n in ns:
        subprocess.run(["ip", "netns", "del", n], capture_output=True)


def agent(path, ns, addr):
    """The launcher: called as `agent HOST COMMAND...` like ssh, runs COMMAND in HOST's
    namespace."""
    with open(path, "w") as f:
        f.write("#!/bin/sh\nhost=$1\nshift\ncase \"$host\" in\n")
        for n, a in zip(ns, addr):
            f.write(f"  {a}) ns={n} ;;\n")
        f.write("  *) echo \"agent: unknown host $host\" >&2; exit 1 ;;\nesac\n"
                "exec ip netns exec \"$ns\" sh -c \"$*\"\n")
    os.chmod(path, stat.S_IRWXU)


def rx_bytes(ns, dev):
    out = subprocess.run(["ip", "netns", "exec", ns, "cat",
                          f"/sys/class/net/{dev}/statistics/rx_bytes"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def main():
    exe = os.path.abspath(sys.argv[1])
    tag = str(os.getpid() % 100000)
    try:
        ns, veth, addr = setup(tag)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        print(f"skipped: cannot make network namespaces ({e})")
        return 77
    ok = False
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ds = os.path.join(tmp, "fmnist")
            os.mkdir(ds)
            write_subset(ds)
            path = spec(tmp, ds, "fit", {"lrs": 0.05, "n_cycle": 1, "cycle_len": 1}, "netns")
            ag = os.path.join(tmp, "agent.sh")
            agent(ag, ns, addr)
            subnet = f"10.200.{SUBNET}.0/24"
            cmd = ["ip", "netns", "exec", ns[0], "mpirun", "-np", "2", "--host", ",".join(addr),
                   "--bind-to", "none", "--mca", "plm_rsh_agent", ag,
                   "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", subnet,
                   "--mca", "oob_tcp_if_include", subnet, exe, path]
            before = rx_bytes(ns[1], veth[1])
            p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
            moved = rx_bytes(ns[1], veth[1]) - before
            ev = events(p.stdout)
            done = [e for e in ev if e["ev"] == "done"]
            world = [e for e in ev if e["ev"] == "world"]
            summed = world[-1]["allreduce_bytes"] if world else 0
            ok = p.returncode == 0 and bool(done) and summed > 0 and moved >= summed
            print(f"{'ok  ' if ok else 'FAIL'} 2-rank fit across {addr}: exit "
                  f"{p.returncode}, gradient bytes summed {summed}, veth received {moved}")
            if not ok:
                print(p.stdout[-3000:], p.stderr[-3000:])
            else:
                print("epochs:", json.dumps([e for e in ev if e["ev"] == "epoch"]))
    finally:
        teardown(ns)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
