#!/usr/bin/env python3
"""Packet-counting benchmark: the agent's kernel counter against tcpdump and a naive
user-space counter, on the same traffic.

A sender in a network namespace pushes UDP datagrams to a counted port on this host across a
veth pair (by default 150 000 per second for 10 s). Three counters watch the host side at the
same time:
  - `container-manager-agent activity` (AF_PACKET + classic BPF, PACKET_STATISTICS only);
  - `tcpdump` with the equivalent filter, writing to /dev/null;
  - `bench_naive_counter`, which reads every packet through a pnet datalink channel.
Each one's CPU time comes from wait4(2) (whole run) and schedstat (during the traffic), its
peak RSS from VmHWM. The round is repeated (--runs, default 5) and the figures are medians;
the agent-to-tcpdump ratio is taken in each round, then its median is printed next to every
round's ratio. The figures are printed, not asserted.

Usage (root; build first as `make bench` does: `cargo build --release -p container-manager-agent
--bin container-manager-agent`, then the same with `--example bench_udp_flood --example
bench_naive_counter` instead of `--bin`):
    python3 tests/bench/packet_bench.py [--rate PPS] [--seconds S] [--runs N]
Only the Python standard library is needed. Names start with `cmact`; addresses are in
10.203.0.240/28.
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

NS, HOST_IF, NS_IF = "cmactbench", "cmactbh", "cmactbn"
HOST_IP, NS_IP = "10.203.0.241", "10.203.0.242"
HOST_MAC, NS_MAC = "02:00:cb:00:ff:01", "02:00:cb:00:ff:02"
PORT = 2456


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def setup():
    teardown()
    ip("netns", "add", NS)
    ip("link", "add", HOST_IF, "address", HOST_MAC, "type", "veth",
       "peer", "name", NS_IF, "address", NS_MAC, "netns", NS)
    for args in (["addr", "add", f"{HOST_IP}/28", "dev", HOST_IF],
                 ["link", "set", HOST_IF, "up"],
                 ["neigh", "replace", NS_IP, "lladdr", NS_MAC, "dev", HOST_IF, "nud", "permanent"]):
        ip(*args)
    for args in (["link", "set", "lo", "up"],
                 ["addr", "add", f"{NS_IP}/28", "dev", NS_IF],
                 ["link", "set", NS_IF, "up"],
                 ["neigh", "replace", HOST_IP, "lladdr", HOST_MAC, "dev", NS_IF, "nud", "permanent"]):
        ip("-n", NS, *args)


def teardown():
    ip("link", "del", HOST_IF, check=False)
    ip("netns", "del", NS, check=False)


def rx_packets():
    with open(f"/sys/class/net/{HOST_IF}/statistics/rx_packets") as f:
        return int(f.read())


def peak_rss_mib(proc):
    """VmHWM of a running process. (wait4's ru_maxrss would include this Python process's
    RSS, inherited across fork and exec.)"""
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_ns(proc):
    """On-CPU nanoseconds of all the process's threads so far (schedstat, not tick-based)."""
    total = 0
    for tid in os.listdir(f"/proc/{proc.pid}/task"):
        try:
            with open(f"/proc/{proc.pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total


def reap(proc):
    """Waits for `proc`; returns its CPU seconds (user + system)."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


def one_run(a, agent, flood, naive):
    """One round: the three counters on the same traffic. Returns what each counted, its CPU
    seconds over the whole run and during the traffic, and its peak RSS."""
    setup()
    procs = []
    try:
        # A game server listens on the port (and never reads), so no ICMP errors go back.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind((HOST_IP, PORT))
        p_agent = subprocess.Popen(
            [agent, "activity", "--interface", HOST_IF, "--port", f"udp:{PORT}", "--interval", "1s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        p_dump = subprocess.Popen(
            ["tcpdump", "-n", "-i", HOST_IF, "-w", "/dev/null", f"inbound and udp dst port {PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        p_naive = subprocess.Popen(
            [naive, HOST_IF, f"udp:{PORT}", str(a.seconds + 6)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs = [p_agent, p_dump, p_naive]
        time.sleep(1.5)
        rx_before = rx_packets()
        named = (("agent", p_agent), ("tcpdump", p_dump), ("naive", p_naive))
        cpu_before = {name: cpu_ns(p) for name, p in named}
        out = subprocess.run(
            ["ip", "netns", "exec", NS, flood, f"{HOST_IP}:{PORT}", str(a.rate), str(a.seconds), str(a.threads)],
            check=True, capture_output=True, text=True, timeout=a.seconds + 30)
        sent = json.loads(out.stdout)
        time.sleep(2.0)
        rx = rx_packets() - rx_before
        window = {name: (cpu_ns(p) - cpu_before[name]) / 1e9 for name, p in named}
        rss = {name: peak_rss_mib(p) for name, p in named}
        for p in (p_agent, p_dump):
            p.send_signal(signal.SIGINT)
        usage = {name: reap(p) for name, p in named}
        procs = []
        agent_count = sum(json.loads(line)["packets"] or 0 for line in p_agent.stdout.read().splitlines())
        dump_err = p_dump.stderr.read()
        m = re.search(r"(\d+) packets captured", dump_err)
        dropped = re.search(r"(\d+) packets dropped by kernel", dump_err)
        naive_count = json.loads(p_naive.stdout.read())["counted"]
        sink.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        teardown()
    return {
        "sent": sent, "rx": rx, "window": window, "rss": rss, "usage": usage,
        "count": {"agent": agent_count, "tcpdump": int(m.group(1)) if m else -1, "naive": naive_count},
        "dropped": int(dropped.group(1)) if dropped else 0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=150_000, help="packets per second to send")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="sender threads")
    ap.add_argument("--runs", type=int, default=5, help="rounds; the figures are their medians")
    ap.add_argument("--target-dir", default=os.environ.get(
        "CARGO_TARGET_DIR", "/var/cache/container-manager/target"))
    a = ap.parse_args()
    rel = os.path.join(a.target_dir, "release")
    agent = os.path.join(rel, "container-manager-agent")
    flood = os.path.join(rel, "examples", "bench_udp_flood")
    naive = os.path.join(rel, "examples", "bench_naive_counter")
    for exe in (agent, flood, naive):
        if not os.access(exe, os.X_OK):
            sys.exit(f"{exe} is missing: build the release binaries first (see --help)")

    runs = []
    for i in range(a.runs):
        print(f"[packet_bench] round {i + 1} of {a.runs}", file=sys.stderr, flush=True)
        runs.append(one_run(a, agent, flood, naive))

    def med(f):
        return statistics.median(f(r) for r in runs)

    sent = med(lambda r: r["sent"]["sent"])
    secs = med(lambda r: r["sent"]["seconds"])
    print(f"medians of {a.runs} rounds; per round: {sent:.0f} packets sent in {secs:.2f} s "
          f"({sent / secs:,.0f} pps); received by {HOST_IF}: {med(lambda r: r['rx']):.0f}")
    print(f"{'method':<28} {'counted':>10} {'cpu s (total)':>14} {'cpu s (traffic)':>16} {'peak RSS MiB':>13}")
    rows = [("agent activity (kernel)", "agent"), ("tcpdump -w /dev/null", "tcpdump"),
            ("naive pnet user-space", "naive")]
    for name, key in rows:
        print(f"{name:<28} {med(lambda r: r['count'][key]):>10.0f} {med(lambda r: r['usage'][key]):>14.4f} "
              f"{med(lambda r: r['window'][key]):>16.4f} {med(lambda r: r['rss'][key]):>13.1f}")
    dropped = [r["dropped"] for r in runs]
    if any(dropped):
        print(f"(tcpdump: packets dropped by kernel per round: {', '.join(map(str, dropped))})")
    for label, part in (("total", "usage"), ("during the traffic", "window")):
        # The ratio is taken in each round (same traffic, same moment), then the median.
        vs_dump = [r[part]["tcpdump"] / max(r[part]["agent"], 1e-6) for r in runs]
        vs_naive = [r[part]["naive"] / max(r[part]["agent"], 1e-6) for r in runs]
        print(f"agent CPU ({label}) is 1/{statistics.median(vs_dump):.0f} of tcpdump's "
              f"(rounds: {', '.join(f'1/{x:.0f}' for x in vs_dump)}) "
              f"and 1/{statistics.median(vs_naive):.0f} of the naive counter's (target: 1/20 of tcpdump's)")
    exact = sum(r["count"]["agent"] == r["sent"]["sent"] for r in runs)
    print(f"agent count exact: {exact} of {a.runs} rounds")


if __name__ == "__main__":
    main()
