"""`make bench`: the benchmark report. Prints one table, writes it to docs/bench.md and quotes
it in the README between the bench markers. Figures are measured here and printed; nothing is
asserted (these machines are noisy).

Sections:
1. packet counting at >= 100 000 packets/s: the agent vs tcpdump vs a naive pnet reader
   (tests/bench/packet_bench.py);
2. agent peak RSS and CPU over 5 minutes of steady running against the emulator, and the
   stripped binary size;
3. reaction times, medians over repeated runs, from JSON log timestamps and the emulator's
   request log: container death -> SetDesiredCapacity, agent start -> Route53 change,
   idle_after expiry -> scale-in call;
4. wake to playable in the cloud twin (tests/twin), medians over BENCH_WAKES wakes, step by
   step (with when the players were told it is waking), next to a paper column of published
   figures for real AWS (docs/aws-sources.md); `bench.py twin` prints it alone, with the
   debug agent;
5. a cost model for 20 hours of play a month, for each mode of the stack, derived from the
   resources the template creates for that mode's parameters, then what is billed by use (the
   dashboard past the free three, data out, DNS queries, logs, function invocations, a baked
   image's snapshot) inside the free tiers and past them, and what a wake nobody joins costs
   (`bench.py cost` prints it alone; prices and sources in docs/aws-sources.md §7 and §14).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import world  # noqa: E402
from world import Game, Timing, World, ts  # noqa: E402

RELEASE = world.TARGET / "release" / "container-manager-agent"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
WAKES = int(os.environ.get("BENCH_WAKES", "5"))
STEADY_SECONDS = int(os.environ.get("BENCH_STEADY_SECONDS", "300"))


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def docker_finished_at(name: str) -> float:
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.FinishedAt}}", name], capture_output=True, text=True, check=True)
    s = out.stdout.strip()
    # 2026-11-22T10:00:00.123456789Z: keep microseconds for fromisoformat.
    m = re.match(r"(.*\.\d{1,6})\d*Z$", s)
    return datetime.fromisoformat((m.group(1) if m else s.rstrip("Z")) + "+00:00").timestamp()


def first_request(w: World, op: str) -> float | None:
    times = [r["time"] for r in w.shim.requests() if r["op"] == op]
    return min(times) if times else None


def wait_request(w: World, op: str, timeout: float) -> float | None:
    """When `op` first reached the emulator, waiting up to `timeout` for it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = first_request(w, op)
        if t is not None:
            return t
        time.sleep(0.1)
    return None


def med(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f}, n={len(xs)})"


# --- 1. packet counting ----------------------------------------------------------------------

def packet_section() -> list[str]:
    script = ROOT / "tests" / "bench" / "packet_bench.py"
    log("packet counting (about 2.5 minutes: 5 rounds)")
    out = subprocess.run([sys.executable, str(script), "--target-dir", str(world.TARGET)], capture_output=True, text=True)
    lines = ["```", *[l for l in out.stdout.splitlines() if l.strip()], "```"]
    if out.returncode != 0:
        lines.append(f"(packet_bench.sh exited {out.returncode}: {out.stderr.strip()[-300:]})")
    return lines


# --- 2. steady running -----------------------------------------------------------------------

def proc_stats(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and peak RSS in KiB of a live process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return cpu, hwm


def steady_section() -> list[str]:
    log(f"steady running for {STEADY_SECONDS} s")
    timing = Timing(sample_interval="10s", idle_after="1h", metrics_interval="60s")
    with World(timing=timing) as w:
        w.start_game(Game.saving_server())
        agent = w.start_agent()
        agent.wait_for("dns_updated", 30)
        assert agent.proc is not None
        w.net.play(2456, rate=50, seconds=STEADY_SECONDS)
        time.sleep(STEADY_SECONDS)
        cpu, hwm = proc_stats(agent.proc.pid)
        samples = len(agent.named("sample"))
        published = len(agent.named("metrics_published"))
        agent.signal_stop()
        agent.wait_exit(60)
    size = RELEASE.stat().st_size
    return [
        f"| agent peak RSS over {STEADY_SECONDS} s (VmHWM) | {hwm / 1024:.1f} MiB | target <= 12 MiB |",
        f"| agent CPU over {STEADY_SECONDS} s | {cpu:.2f} s ({cpu / STEADY_SECONDS * 100:.2f} % of one core); {samples} samples, {published} metric batches | |",
        f"| stripped release binary | {size / 1024 / 1024:.1f} MiB | |",
    ]


# --- 3. reaction times -----------------------------------------------------------------------

def reaction_section() -> list[str]:
    death_to_scale: list[float] = []
    death_to_decision: list[float] = []
    start_to_dns: list[float] = []
    idle_to_scale: list[float] = []
    for i in range(RUNS):
        log(f"crash run {i + 1}/{RUNS}")
        with World() as w:
            w.start_game(Game.crashing_server(after=3, code=3))
            agent = w.start_agent()
            decision = agent.wait_for("scale_in_requested", 30)
            call = wait_request(w, "SetDesiredCapacity", 10)
            died = docker_finished_at(Game.NAME)
            death_to_decision.append(ts(decision) - died)
            if call is not None:
                death_to_scale.append(call - died)
            dns = first_request(w, "ChangeResourceRecordSets")
            if dns is not None:
                start_to_dns.append(dns - agent.started_at)
    for i in range(RUNS):
        log(f"idle run {i + 1}/{RUNS}")
        with World() as w:
            w.start_game(Game.saving_server())
            agent = w.start_agent()
            agent.wait_for("dns_updated", 30)
            w.net.play(2456, rate=20, seconds=3).wait(10)
            agent.wait_for("scale_in_requested", 30)
            call = wait_request(w, "SetDesiredCapacity", 10)
            # The agent's own rule: at least min_packets_per_second (2/s) over the interval.
            active = [ts(e) for e in agent.named("sample") if e.get("packets", 0) >= 2 * e.get("interval_ms", 1000) / 1000]
            if call is not None and active:
                idle_to_scale.append(call - (max(active) + 6.0))
    return [
        f"| container death -> SetDesiredCapacity call | {med(death_to_scale)} | target <= 1 s |",
        f"| container death -> scale_in_requested (log) | {med(death_to_decision)} | target < 100 ms |",
        f"| agent start -> Route53 change submitted | {med(start_to_dns)} | target <= 1 s |",
        f"| idle_after expiry -> scale-in call (sample_interval 1 s) | {med(idle_to_scale)} | target <= 1 sample_interval |",
    ]


# --- 4. wake to playable in the twin ---------------------------------------------------------

# Published figures for the same steps on real AWS, each with its source in docs/aws-sources.md
# (the section named in the cell). Where none is published, the cell says so.
PAPER: dict[str, str] = {
    "lookup": "0 s",
    "query_log": "no published per-query latency (§1)",
    "wake_call": "CloudWatch Logs to Lambda: \"usually less than three minutes\", a bound (§3, §5)",
    "capacity": "Lambda cold start: under 100 ms to over 1 s (§5)",
    "told": "the capacity, then the function's 1 s wait for wakes in flight together (§12), one GetParameter "
            "and the webhook's POST; no published figure for a Discord webhook's answer",
    "launch": "SetDesiredCapacity to launch: no published figure; pending to running 4.9 s in one 2021 run (§5)",
    "user_data": "running to OS reachable: 17-23 s in the same run (§5)",
    "installed": "cold ASG launch with an app install: 243 s in AWS's sample; from a stopped warm pool 36 s (§5)",
    "agent_up": "no published figure for ECS registration or image pull (§5)",
    "dns": "Route53 change on all its servers within 60 s (§5); the agent does not wait for it",
    "resolved": "the player's retry (1 s here) plus the TTL (1 s)",
    "connected": "the game's world load: not in any AWS figure",
    "counted": "one sample interval (10 s by default)",
}


def twin_wakes(pool: str, release: bool = True) -> dict[str, list[float]]:
    """WAKES wakes in one twin, each ended through the API as the agent would after idle_after
    (the termination path runs in full); with a pool, each wake waits for the pool to refill."""
    sys.path.insert(0, str(ROOT / "tests" / "twin"))
    import timeline
    import twin

    if release:
        twin.AGENT = RELEASE
    per_step: dict[str, list[float]] = {k: [] for k, _ in timeline.STEPS}
    with twin.Twin(overrides={"WarmPool": pool}) as tw:
        autoscaling = tw.client("autoscaling")
        for n in range(WAKES):
            if pool != "none":
                tw.wait_pool_ready(300)
            since = time.time()
            tw.player("--play-seconds", "3", "--rate", "10")
            tw.wait_for("connected", 240, source="player", after=since)
            tw.wait_for("sample", 20, source="agent", after=since, pred=lambda e: int(e.get("packets", 0) or 0) > 0)
            for key, _, t in timeline.breakdown(tw.events, after=since):
                if t is not None:
                    per_step[key].append(t)
            autoscaling.set_desired_capacity(AutoScalingGroupName=tw.deployed.group, DesiredCapacity=0)
            tw.wait_for("instance_terminated", 200, source="asg", after=since)
            log(f"twin wake {n + 1}/{WAKES} ({pool}): playable after {per_step['connected'][-1]:.2f} s")
    return per_step


def twin_section(release: bool = True) -> list[str]:
    sys.path.insert(0, str(ROOT / "tests" / "twin"))
    import timeline

    cold, warm = twin_wakes("none", release), twin_wakes("stopped", release)

    def cell(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f}, n={len(xs)})" if xs else "not a step here"

    rows = ["| step (time since the first lookup) | twin, cold: median (min-max, n) | twin, warm pool | real AWS, on paper |",
            "| --- | --- | --- | --- |"]
    for key, label in timeline.STEPS:
        rows.append(f"| {label} | {cell(cold[key])} | {cell(warm[key])} | {PAPER.get(key, '')} |")
    rows += ["", "The twin's instance is a container on this machine: it has no EC2 launch, no firmware or kernel "
             "boot, no image pull and no world load, so its total is the floor of what the stack's own steps cost. "
             "A warm start skips the user-data (the agent's download and check) and the preparation; "
             "the paper column is what real AWS adds (sources in docs/aws-sources.md and docs/warm-pool-sources.md). "
             "On paper the CloudWatch Logs subscription (a bound of three minutes) and a cold launch with its image "
             "pull (243 s in AWS's sample) dominate; a warm pool (36 s in the same sample) is the lever for the second."]
    return rows


# --- 5. cost ----------------------------------------------------------------------------------

# Prices, us-east-1, as stated on 2026-11-29 (sources in docs/aws-sources.md §7, the reasoning in
# docs/cloud.md, "Which mode to pick"; check the current price lists before relying on them).
# Spot prices move; SPOT_SHARE is an assumption.
PRICES_DATE = "2026-11-29"
PRICES = {"t3a.medium": 0.0376, "t3a.large": 0.0752, "m6a.xlarge": 0.1728}  # on demand, Linux, $/h
SPOT_SHARE = 0.35             # a Spot hour as a share of the on-demand hour (assumed; see docs/cloud.md)
PUBLIC_IPV4_H = 0.005         # $/h per public IPv4 address; IPv6 addresses cost nothing
GP3_GB_MONTH = 0.08
EFS_GB_MONTH = {("regional", "standard"): 0.30, ("regional", "ia"): 0.016,
                ("one-zone", "standard"): 0.16, ("one-zone", "ia"): 0.0133}
BACKUP_GB_MONTH = 0.05        # AWS Backup, EFS warm storage
ZONE_MONTH = 0.50             # the hosted zone the user brings
ALARM_METRIC_MONTH = 0.10     # per metric in a standard-resolution alarm
METRIC_MONTH = 0.30           # per custom metric
HOURS_MONTH = 730

# The workload: 20 hours of play a month in 10 evenings of 2 hours.
HOURS_PLAYED = 20.0
SESSIONS = 10
BOOT_MIN, WARM_BOOT_MIN, IDLE_MIN = 3, 1, 7   # a cold boot, a start from the pool, idle_after (default)
PREP_MIN = 5                  # a warm pool's preparation boot after each session (AWS's sample: 260 s)
WORLD_GB = 1.0                # loaded and saved in place every session: stays in Standard
COLD_GB = 4.0                 # older saves and the game's own backups, not read for 30 days
BACKUP_GB = 2.0               # the daily backups' stored (incremental) size
METRICS = 5                   # custom metrics the agent publishes while it runs
TARGET = 2.00                 # issue 12: on demand, t3a.medium, the defaults


def stack_resources(params: dict[str, str]) -> dict:
    """What the stack creates for these parameters, read from cloud/container-manager.yaml with
    its conditions resolved: the figures the cost model multiplies."""
    sys.path.insert(0, str(ROOT / "tests" / "twin"))
    import stack

    template = stack.load_template(stack.TEMPLATE)
    # A user's required parameters (the Palworld example's), then the mode's.
    params = {**stack.example("palworld"), **params}
    resolve = stack.Resolver(template, params, {}, "", "bench")
    res = {k: v for k, v in template["Resources"].items() if "Condition" not in v or resolve.condition(v["Condition"])}

    def present(value: object) -> bool:
        """Whether a property is set once its Fn::If are decided (without evaluating it)."""
        while isinstance(value, dict) and "Fn::If" in value:
            cond, yes, no = value["Fn::If"]
            value = yes if resolve.condition(cond) else no
        return value is not None and value != {"Ref": "AWS::NoValue"}

    data = res["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    (eni,) = data["NetworkInterfaces"]
    (root,) = data["BlockDeviceMappings"]
    systems = [v for v in res.values() if v["Type"] == "AWS::EFS::FileSystem"]
    group = res["AutoScalingGroup"]["Properties"]
    alarm_metrics = sum(len(v["Properties"].get("Metrics", [])) - 1 if "Metrics" in v["Properties"] else 1
                        for v in res.values() if v["Type"] == "AWS::CloudWatch::Alarm")
    return {
        "instance_type": resolve(data["InstanceType"]),
        "spot": present(group.get("MixedInstancesPolicy")),
        "warm_pool": any(v["Type"] == "AWS::AutoScaling::WarmPool" for v in res.values()),
        "public_ipv4": resolve(eni["AssociatePublicIpAddress"]) is True,
        "ipv6_addresses": resolve(eni["Ipv6AddressCount"]) if present(eni.get("Ipv6AddressCount")) else 0,
        "root_gb": int(resolve(root["Ebs"]["VolumeSize"])),
        "file_systems": len(systems),
        "one_zone": all(present(fs["Properties"].get("AvailabilityZoneName")) for fs in systems),
        "ia_lifecycle": all(any("TransitionToIA" in p for p in fs["Properties"].get("LifecyclePolicies", []))
                            for fs in systems),
        "backed_up": any(v["Type"] == "AWS::Backup::BackupSelection" for v in res.values()),
        "alarm_metrics": alarm_metrics,
        "dashboards": sum(1 for v in res.values() if v["Type"] == "AWS::CloudWatch::Dashboard"),
        "log_retention_days": int(resolve({"Ref": "LogRetentionDays"})),
    }


def monthly_cost(params: dict[str, str], price_h: float | None = None) -> dict[str, float]:
    """The monthly bill of the stack with these parameters, item by item (see cost_section)."""
    r = stack_resources(params)
    hour = price_h if price_h is not None else PRICES[r["instance_type"]]
    hour *= SPOT_SHARE if r["spot"] else 1.0
    boot = WARM_BOOT_MIN if r["warm_pool"] else BOOT_MIN
    running = HOURS_PLAYED + SESSIONS * (boot + IDLE_MIN + (PREP_MIN if r["warm_pool"] else 0)) / 60
    kind = "one-zone" if r["one_zone"] else "regional"
    cold_class = "ia" if r["ia_lifecycle"] else "standard"
    root_hours = HOURS_MONTH if r["warm_pool"] else running
    return {
        "running_h": running,
        "instance": running * hour,
        "ipv4": running * PUBLIC_IPV4_H if r["public_ipv4"] else 0.0,
        "root": r["root_gb"] * GP3_GB_MONTH * root_hours / HOURS_MONTH,
        "efs": WORLD_GB * EFS_GB_MONTH[(kind, "standard")] + COLD_GB * EFS_GB_MONTH[(kind, cold_class)],
        "backup": BACKUP_GB * BACKUP_GB_MONTH if r["backed_up"] else 0.0,
        # A game in a base shares the base's zone (many_servers_rows adds it once).
        "zone": 0.0 if params.get("BaseName") else ZONE_MONTH,
        "alarms": r["alarm_metrics"] * ALARM_METRIC_MONTH,
        "metrics": METRICS * METRIC_MONTH * running / HOURS_MONTH,
    }


def total(c: dict[str, float]) -> float:
    return sum(v for k, v in c.items() if k != "running_h")


MODES = [  # label, parameters (the rest are the template's defaults)
    ("on-demand, One Zone, IPv4 (the defaults)", {}),
    ("on-demand, One Zone, IPv6 (dual stack)", {"IPv6": "true"}),
    ("on-demand, regional", {"FileSystemType": "regional"}),
    ("on-demand, One Zone, warm pool", {"WarmPool": "stopped"}),
    ("on-demand, regional, warm pool", {"FileSystemType": "regional", "WarmPool": "stopped"}),
    ("Spot, One Zone", {"CapacityType": "spot", "StopTimeoutSeconds": "100"}),
    ("Spot, One Zone, IPv6", {"CapacityType": "spot", "StopTimeoutSeconds": "100", "IPv6": "true"}),
    ("Spot, regional", {"CapacityType": "spot", "StopTimeoutSeconds": "100", "FileSystemType": "regional"}),
]
BEFORE = 3.34  # the previous model's figure: regional EFS, 5 GB all in Standard


def cost_section() -> list[str]:
    base = {"ServerFilesPath": "", "InstanceType": "t3a.medium"}
    d = monthly_cost(base)
    alarms = stack_resources(base)["alarm_metrics"]
    rows = [
        f"Prices: us-east-1, stated on {PRICES_DATE} (docs/cloud.md, \"Which mode to pick\"); Spot at {SPOT_SHARE:.0%} of the on-demand price (assumed).",
        f"Workload: {HOURS_PLAYED:.0f} h of play in {SESSIONS} sessions; each adds a boot ({BOOT_MIN} min, {WARM_BOOT_MIN} min from a warm pool) and idle_after ({IDLE_MIN} min),",
        f"a warm pool also a {PREP_MIN}-min preparation boot. Save data {WORLD_GB + COLD_GB:.0f} GB: the world, {WORLD_GB:.0f} GB, loaded and saved in place every session (stays in Standard);",
        f"{COLD_GB:.0f} GB of older saves nobody reads (in Infrequent Access after 30 days). Backups {BACKUP_GB:.0f} GB. No server-files file system.",
        "",
        "Formula, with the counts read from cloud/container-manager.yaml for each mode's parameters (`stack_resources()`):",
        "  running h = played h + sessions x (boot + idle [+ preparation]) / 60",
        "  monthly = running h x instance $/h (x Spot share) + running h x public IPv4 $/h + root GB x gp3 x (running h, or 730 h with a warm pool) / 730",
        "          + world GB x EFS Standard + other GB x EFS IA (One Zone or regional prices) + backup GB x $/GB + hosted zone",
        f"          + alarm metrics ({alarms}) x ${ALARM_METRIC_MONTH:.2f} + {METRICS} custom metrics x ${METRIC_MONTH:.2f} x running h / 730",
        "",
        "| mode (t3a.medium) | running h | instance | IPv4 | root | EFS | backup | zone | alarms + metrics | $/month | $/year |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, given in MODES:
        c = monthly_cost({**base, **given})
        t = total(c)
        note = ""
        if not given:
            verdict = "meets it" if t <= TARGET else f"misses it by ${t - TARGET:.2f}"
            note = f" (target ${TARGET:.2f}: {verdict}; before: ${BEFORE:.2f})"
        rows.append(f"| {label} | {c['running_h']:.1f} | {c['instance']:.2f} | {c['ipv4']:.2f} | {c['root']:.2f} | "
                    f"{c['efs']:.2f} | {c['backup']:.2f} | {c['zone']:.2f} | {c['alarms'] + c['metrics']:.2f} | "
                    f"**{t:.2f}**{note} | {t * 12:.2f} |")
    rows += ["", "Spot with a warm pool: refused by the template (AWS does not allow the pair).", "",
             f"Each further GB of save data adds ${EFS_GB_MONTH[('one-zone', 'standard')]:.2f} a month in One Zone Standard "
             f"(${EFS_GB_MONTH[('regional', 'standard')]:.2f} regional) while it is read every month, "
             f"${EFS_GB_MONTH[('one-zone', 'ia')]:.4f} (${EFS_GB_MONTH[('regional', 'ia')]:.3f}) once nobody has read it for "
             f"30 days, plus up to ${BACKUP_GB_MONTH:.2f} for its backup.", ""]
    free = d["alarms"] + d["metrics"]
    rows += [
        f"CloudWatch's always-free tier (10 alarm metrics and 10 custom metrics a month) covers the alarms and "
        f"metrics (${free:.2f}) in an account that has no others: the defaults then cost ${total(d) - free:.2f}.",
        "",
        "| instance type (the defaults otherwise) | on-demand $/h | $/month on demand | $/month Spot | old design's goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for itype, price in PRICES.items():
        od = total(monthly_cost({**base, "InstanceType": itype}))
        spot = total(monthly_cost({**base, "InstanceType": itype, "CapacityType": "spot", "StopTimeoutSeconds": "100",
                                   "SpotInstanceTypes": itype}))
        rows.append(f"| {itype} | {price:.4f} | {od:.2f} | {spot:.2f} | < 120.00 a year |")
    return rows + [""] + usage_rows(d, stack_resources(base)) + [""] + bot_rows() + [""] + many_servers_rows(base)


SERVER_COUNTS = (1, 3, 10)
PER_SERVER_TARGET = 2.00      # issue 38: from the second server on, the defaults, per server


def many_servers_rows(base: dict[str, str]) -> list[str]:
    """Many servers under one domain (issue 38, docs/many-servers.md): a stack of its own per
    server (each then needs a zone of its own: one query logging configuration per zone), against
    one base and a game stack per server, read from the template with BaseName set."""
    alone = total(monthly_cost(base))
    game = monthly_cost({**base, "BaseName": "community"})
    each = total(game)
    verdict = "meets it" if each <= PER_SERVER_TARGET else f"misses it by ${each - PER_SERVER_TARGET:.2f}"
    rows = [
        "Many servers under one domain (the defaults, t3a.medium, the workload above for each server). A stack per",
        "server needs a hosted zone per server; a base (cloud/base.yaml: network, one wake path) shares one zone, and",
        "its network, query logging and wake function cost nothing at rest. Formula: a stack each = n x the defaults;",
        "a base = the zone + n x (the defaults without the zone), each game's own part read from the template with BaseName.",
        "",
        "| servers | a stack each, $/month | per server | a base and n game stacks, $/month | per server |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n in SERVER_COUNTS:
        own, shared = n * alone, ZONE_MONTH + n * each
        rows.append(f"| {n} | {own:.2f} | {own / n:.2f} | {shared:.2f} | **{shared / n:.2f}** |")
    rows += ["", f"Each server from the second on adds ${each:.2f} a month in a base (target ${PER_SERVER_TARGET:.2f}: "
                 f"{verdict}), against ${alone:.2f} as a stack of its own."]
    return rows


SAVE_MIN = 0.5                # the save and the termination after a scale-in
BOT_EVERY_MIN = 5             # a bot's (or a link preview's) lookup, with nobody playing
BOT_TARGET = 60               # issue 36: instance-minutes a day at most


# What the mode table leaves out: the usage-billed items (issue 40). Prices us-east-1, as stated
# on USAGE_PRICES_DATE, sources in docs/aws-sources.md §14; the free tiers are account-wide and monthly.
USAGE_PRICES_DATE = "2026-12-06"
DASHBOARD_MONTH = 3.00        # each dashboard past an account's first three (free)
FREE_DASHBOARDS = 3
EGRESS_GB = 0.09              # data out to the internet, first 10 TB a month, past the free 100 GB
EGRESS_FREE_GB = 100
QUERIES_M = 0.40              # Route53 standard queries, per million (the first billion a month)
LOGS_INGEST_GB = 0.50         # CloudWatch Logs, standard class
LOGS_STORE_GB_MONTH = 0.03
LOGS_FREE_GB = 5              # ingestion, and storage, a month each
LAMBDA_REQUESTS_M = 0.20      # past 1 million requests a month (free)
LAMBDA_GB_S = 0.0000166667    # past 400,000 GB-seconds a month (free)
SNAPSHOT_GB_MONTH = 0.05      # EBS snapshots: not in a stored source (AWS's EBS pricing page)
# The usage, per month of the workload above. Assumed where no source gives a figure.
PLAYERS = 3                   # players in a session (assumed)
GAME_MB_PER_PLAYER_H = {      # data the server sends one player in an hour of play
    "valheim": 230,           # an upper bound: the server's send limit, 64 KB/s per connection
    "minecraft": 100,         # vanilla: 50-100 MB per player-hour
}
LOOKUPS_PER_PLAYER_SESSION = 50   # a client's and its server browser's lookups of the name (assumed)
BOT_LOOKUPS_MONTH = 30 * 24 * 60 // BOT_EVERY_MIN
QUERY_LINE_BYTES = 130        # one query-log line (about 100 bytes) and room for what CloudWatch counts per event (assumed)
FUNCTION_LOG_BYTES = 450      # Lambda's START, END and REPORT lines and the function's own line, per invocation
FUNCTION_GB_S = 0.128 * 0.3   # 128 MB for about 0.3 s per invocation (1.3 s when it wakes and tells the players)
GAME_LOG_MB_PER_H = 1.0       # the game's output while it runs (assumed; games differ widely)
AGENT_LOG_BYTES_PER_WAKE = 1855   # measured: the crashed instance's lines in tests/twin/test_twin_operator.py
UNUSED_WAKES_MONTH = 90       # a bot's lookups with the default budget: 3 a day
IMAGE_GB = (5, 10)            # a baked image's snapshot: the AMI and the game's image


def usage_rows(c: dict[str, float], r: dict) -> list[str]:
    """The usage-billed items the mode table leaves out, for the defaults: each with its monthly
    usage, its cost inside the free tiers (an account with nothing else using them) and past them."""
    lookups = SESSIONS * PLAYERS * LOOKUPS_PER_PLAYER_SESSION + BOT_LOOKUPS_MONTH
    invocations = lookups  # at most one per lookup of the name (the filter passes only those lines)
    wakes = SESSIONS + UNUSED_WAKES_MONTH
    logs_mb = {
        "the query log": lookups * QUERY_LINE_BYTES / 1e6,
        "the functions' logs": invocations * FUNCTION_LOG_BYTES / 1e6,
        "the game's log": c["running_h"] * GAME_LOG_MB_PER_H,
        "the agent's decision lines": wakes * AGENT_LOG_BYTES_PER_WAKE / 1e6,
    }
    logs_gb = sum(logs_mb.values()) / 1000
    stored_gb = logs_gb * r["log_retention_days"] / 30
    egress = {game: PLAYERS * HOURS_PLAYED * mb / 1000 for game, mb in GAME_MB_PER_PLAYER_H.items()}
    fn = (max(0.0, invocations - 1e6) / 1e6 * LAMBDA_REQUESTS_M, invocations / 1e6 * LAMBDA_REQUESTS_M
          + invocations * FUNCTION_GB_S * LAMBDA_GB_S)
    rows_data = [
        ("the dashboard (CreateDashboard, on by default)", f"{r['dashboards']} dashboard",
         0.0, r["dashboards"] * DASHBOARD_MONTH,
         f"free as one of the account's first {FREE_DASHBOARDS}; ${DASHBOARD_MONTH:.2f} past them"),
        *[(f"data out, {game} ({PLAYERS} players, {GAME_MB_PER_PLAYER_H[game]} MB per player-hour)", f"{gb:.1f} GB", 0.0,
           gb * EGRESS_GB, f"free in the account's first {EGRESS_FREE_GB} GB; ${EGRESS_GB:.2f}/GB past them")
          for game, gb in egress.items()],
        ("data out, palworld", "no stored source", 0.0, 0.0, "not modelled: no figure for its traffic in a stored source"),
        ("Route53 queries of the zone", f"{lookups:,} ({BOT_LOOKUPS_MONTH:,} a bot's)", lookups / 1e6 * QUERIES_M,
         lookups / 1e6 * QUERIES_M, f"${QUERIES_M:.2f} per million; no free tier"),
        ("log ingestion (" + ", ".join(f"{k} {v:.2f} MB" for k, v in logs_mb.items()) + ")",
         f"{logs_gb * 1000:.1f} MB", 0.0, logs_gb * LOGS_INGEST_GB,
         f"free in the first {LOGS_FREE_GB} GB; ${LOGS_INGEST_GB:.2f}/GB past them"),
        (f"log storage ({r['log_retention_days']} days kept)", f"{stored_gb * 1000:.1f} MB-month", 0.0,
         stored_gb * LOGS_STORE_GB_MONTH, f"free in the first {LOGS_FREE_GB} GB-month; ${LOGS_STORE_GB_MONTH:.2f}/GB-month past them"),
        ("function invocations (the wake function: at most one per lookup of the name)", f"{invocations:,}", fn[0], fn[1],
         "free in the first million and 400,000 GB-s; $0.20 per million and $0.0000166667/GB-s past them"),
    ]
    inside = sum(row[2] for row in rows_data)
    # Past the free tiers: one game's data out (the larger), not every game's.
    worst = max(egress, key=egress.get)
    past = sum(row[3] for row in rows_data if not row[0].startswith("data out")) + egress[worst] * EGRESS_GB
    lines = [
        "What the table above leaves out (the defaults; billed by use, so each row has its usage; $ = usage x price, "
        f"us-east-1 prices as stated on {USAGE_PRICES_DATE}, each with its source in docs/aws-sources.md §14):",
        "",
        "| item | a month | $ inside the free tiers | $ past them | price |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c_:.4f} | {d:.4f} | {e} |" for a, b, c_, d, e in rows_data],
        f"| **total** | | **{inside:.2f}** | **{past:.2f}** (data out: {worst}'s) | |",
        "",
        f"Assumed, not measured: {PLAYERS} players a session, {LOOKUPS_PER_PLAYER_SESSION} lookups of the name per player and "
        f"session, {GAME_LOG_MB_PER_H:.0f} MB of game log an hour; a bot's lookup every {BOT_EVERY_MIN} min. "
        f"Measured: the agent's lines per wake ({AGENT_LOG_BYTES_PER_WAKE} bytes, the twin).",
        "",
        "| the first server (the defaults) | $/month |",
        "| --- | --- |",
        f"| with the dashboard, in an account with at most {FREE_DASHBOARDS - 1} others and the free tiers unused | "
        f"{total(c) + inside:.2f} |",
        f"| without the dashboard (CreateDashboard=false) | {total(c) + inside:.2f} |",
        f"| with the dashboard as a 4th or later (${DASHBOARD_MONTH:.2f}) | {total(c) + inside + DASHBOARD_MONTH:.2f} |",
        f"| without the dashboard, every free tier used up elsewhere (data out: {worst}) | "
        f"{total(c) + past - r['dashboards'] * DASHBOARD_MONTH:.2f} |",
        f"| with the dashboard as a 4th, every free tier used up elsewhere | {total(c) + past:.2f} |",
        "",
        f"A baked image (`cloud/ami-recipe.yaml`) adds its snapshot: {IMAGE_GB[0]}-{IMAGE_GB[1]} GB at "
        f"${SNAPSHOT_GB_MONTH:.2f}/GB-month, ${IMAGE_GB[0] * SNAPSHOT_GB_MONTH:.2f}-{IMAGE_GB[1] * SNAPSHOT_GB_MONTH:.2f} "
        "(AWS's EBS pricing; not in a stored source).",
    ]
    return lines


def bot_rows() -> list[str]:
    """What a lookup every 5 minutes that no player follows costs a day, with the template's
    defaults, before the unused-wake rule and its budget and after (issue 36)."""
    sys.path.insert(0, str(ROOT / "tests" / "twin"))
    import stack

    defaults = {k: float(v.get("Default", 0)) for k, v in stack.load_template(stack.TEMPLATE)["Parameters"].items()
                if k in ("BootGraceMinutes", "IdleMinutes", "UnusedMinutes", "UnusedWakesPerDay")}
    # Before: a wake lasted the boot grace plus idle_after (from the boot), longer than the bot's
    # period, so every lookup found the server up or woke it again: it never slept.
    wake_before = max(BOOT_MIN, defaults["BootGraceMinutes"]) + defaults["IdleMinutes"] + SAVE_MIN
    before = 1440.0 if wake_before >= BOT_EVERY_MIN else 1440.0 / BOT_EVERY_MIN * wake_before
    # After: a wake nobody joins lasts the boot, UnusedMinutes and the save, and only the budget's
    # number of them wake it in a day.
    wake_after = BOOT_MIN + defaults["UnusedMinutes"] + SAVE_MIN
    after = min(1440.0, defaults["UnusedWakesPerDay"] * wake_after)
    price = PRICES["t3a.medium"] + PUBLIC_IPV4_H
    verdict = "meets it" if after <= BOT_TARGET else "misses it"
    # One wake nobody joins, item by item: the instance and its address for its minutes, its root
    # volume for them, the agent's metrics for them, a lookup, an invocation and its log lines, and
    # the agent's decision lines (past the free tiers; inside them only the first three count).
    hours = wake_after / 60
    one = {
        "instance": hours * PRICES["t3a.medium"], "IPv4": hours * PUBLIC_IPV4_H,
        "root": stack_resources({})["root_gb"] * GP3_GB_MONTH * hours / HOURS_MONTH,
        "metrics": METRICS * METRIC_MONTH * hours / HOURS_MONTH,
        "lookup, invocation, logs": QUERIES_M / 1e6 + LAMBDA_REQUESTS_M / 1e6 + FUNCTION_GB_S * LAMBDA_GB_S
        + (QUERY_LINE_BYTES + FUNCTION_LOG_BYTES + AGENT_LOG_BYTES_PER_WAKE) / 1e9 * LOGS_INGEST_GB,
    }
    return [
        f"A bot that looks the name up every {BOT_EVERY_MIN} minutes, nobody playing (the template's defaults: "
        f"BootGraceMinutes {defaults['BootGraceMinutes']:.0f}, IdleMinutes {defaults['IdleMinutes']:.0f}, "
        f"UnusedMinutes {defaults['UnusedMinutes']:.0f}, UnusedWakesPerDay {defaults['UnusedWakesPerDay']:.0f}; "
        f"a {BOOT_MIN}-min boot and a {SAVE_MIN}-min save, the model's, not measured on AWS):",
        "",
        "| | one wake | wakes a day | instance-minutes a day | $/month (t3a.medium + IPv4) |",
        "| --- | --- | --- | --- | --- |",
        f"| before (boot grace + idle_after) | {wake_before:.1f} min | never sleeps | {before:.0f} | {before / 60 * price * 30:.2f} |",
        f"| after (unused_after + the budget) | {wake_after:.1f} min | {defaults['UnusedWakesPerDay']:.0f} | "
        f"**{after:.1f}** (target {BOT_TARGET}: {verdict}) | {after / 60 * price * 30:.2f} |",
        "",
        f"One wake nobody joins costs ${sum(one.values()):.4f}: "
        + ", ".join(f"{k} ${v:.5f}" for k, v in one.items()) + f" ({wake_after:.1f} min up).",
    ]



LOOKUP_GAMES = (1, 10, 100)
LOOKUP_RUNS = 7


def lookup_section() -> list[str]:
    """The wake function's own time for one lookup among 1, 10 and 100 games in one wake path
    (issue 38): its inline code from the template, against moto in server mode on 127.0.0.1, the
    groups tagged as the template tags them. Two cases per lookup: a name no game has (one
    DescribeAutoScalingGroups call) and a sleeping game's name (that call, then SetDesiredCapacity;
    the game is put back to 0 between runs). moto answers in-process, so this is the function's and
    the filter's cost, not AWS's latency."""
    import base64
    import contextlib
    import gzip
    import io
    import json
    import socket
    import types

    import boto3
    from moto.server import ThreadedMotoServer

    sys.path.insert(0, str(ROOT / "tests" / "twin"))
    import stack

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": url,
           "AWS_DEFAULT_REGION": "us-east-1", "WAKE_PATH": "container-manager-base-bench", "SERVER_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    rows = ["| games in the wake path | a name of no game (1 call) | a sleeping game's name (2 calls) |",
            "| --- | --- | --- |"]
    try:
        code = stack.load_template(stack.TEMPLATE)["Resources"]["WakeFunction"]["Properties"]["Code"]["ZipFile"]
        ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
        autoscaling = boto3.client("autoscaling", endpoint_url=url, region_name="us-east-1")
        ec2.create_launch_template(LaunchTemplateName="game", LaunchTemplateData={
            "ImageId": "ami-12c6146b", "InstanceType": "t3a.medium"})
        subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        made = 0

        def event(name: str) -> dict:
            line = f"1.0 2026-12-07T10:00:00.000Z Z1 {name} A NOERROR UDP FRA56-C1 198.51.100.7 -"
            batch = {"messageType": "DATA_MESSAGE", "logEvents": [{"id": "1", "timestamp": 0, "message": line}]}
            return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(batch).encode())).decode()}}

        for n in LOOKUP_GAMES:
            while made < n:
                name = f"container-manager-game{made}"
                autoscaling.create_auto_scaling_group(
                    AutoScalingGroupName=name, MinSize=0, MaxSize=1, DesiredCapacity=0,
                    LaunchTemplate={"LaunchTemplateName": "game"}, VPCZoneIdentifier=subnet,
                    Tags=[{"ResourceId": name, "ResourceType": "auto-scaling-group", "PropagateAtLaunch": False,
                           "Key": f"container-manager:{k}", "Value": v}
                          for k, v in {"wake-path": "container-manager-base-bench", "record": f"game{made}.example.com",
                                       "wake-types": "A", "wake-budget": "0", "wake-notice": "none"}.items()])
                made += 1
            module = types.ModuleType("wake_bench")
            exec(compile(code, "<wake>", "exec"), module.__dict__)
            target = f"game{n - 1}.example.com"
            unknown, woken = [], []
            for _ in range(LOOKUP_RUNS):
                with contextlib.redirect_stdout(io.StringIO()):  # its "Woke ..." lines, Lambda's log
                    t = time.perf_counter()
                    assert module.handler(event("nobody.example.com"), None) == "ignored"
                    unknown.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    assert module.handler(event(target), None) == "woken"
                    woken.append(time.perf_counter() - t)
                autoscaling.set_desired_capacity(AutoScalingGroupName=f"container-manager-game{n - 1}", DesiredCapacity=0)
            rows.append(f"| {n} | {statistics.median(unknown) * 1000:.1f} ms | {statistics.median(woken) * 1000:.1f} ms |")
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return rows + ["", f"Medians of {LOOKUP_RUNS} lookups each; `bench.py lookup` reruns this table alone."]


def main() -> int:
    if sys.argv[1:] == ["cost"]:
        # The cost model alone: no build, no measurement (it reads only the template).
        print("\n".join(cost_section()))
        return 0
    if sys.argv[1:] == ["lookup"]:
        # The wake function's lookup among many games, alone (moto only).
        print("\n".join(lookup_section()))
        return 0
    if sys.argv[1:] == ["twin"]:
        # The twin's wake breakdown alone, with the debug agent `make build` makes (the full
        # bench measures the release build); it prints and writes no report.
        print(f"Wake to playable in the cloud twin, debug agent ({WAKES} wakes each):")
        print("\n".join(twin_section(release=False)))
        return 0
    if not RELEASE.exists():
        print(f"bench: build the release binary first ({RELEASE})", file=sys.stderr)
        return 1
    world.AGENT = RELEASE  # measure what ships
    started = time.time()
    sections = {
        "Packet counting at >= 100 000 packets/s (10 s of traffic)": packet_section(),
        "Agent footprint": ["| measure | value | target |", "| --- | --- | --- |", *steady_section()],
        "Reaction times (medians; timings: sample_interval 1 s, idle_after 6 s)": ["| measure | median | target |", "| --- | --- | --- |", *reaction_section()],
        f"Wake to playable in the cloud twin, cold and from a warm pool ({WAKES} wakes each; SampleIntervalSeconds 1)": twin_section(),
        "Cost model: 20 hours of play a month": cost_section(),
        "The wake function's lookup among many games (issue 38; moto on 127.0.0.1)": lookup_section(),
    }
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    out = [f"Measured by `make bench` on {stamp} ({os.cpu_count()} cores), in {time.time() - started:.0f} s.", ""]
    for title, lines in sections.items():
        out += [f"### {title}", "", *lines, ""]
    text = "\n".join(out)
    print(text)
    (ROOT / "docs" / "bench.md").write_text("# Benchmark report\n\n" + text + "\n")
    readme = ROOT / "README.md"
    r = readme.read_text()
    r = re.sub(r"(<!-- bench:begin -->\n).*?(<!-- bench:end -->)", lambda m: m.group(1) + text + "\n" + m.group(2), r, flags=re.S)
    readme.write_text(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
