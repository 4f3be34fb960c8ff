"""Unit checks of the twin's own parts that stand in for AWS behaviour: the CloudWatch Logs filter
pattern rules and the Route53 query-log line (fast; no Docker, no network)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import logfilter  # noqa: E402
from nameserver import query_log_line  # noqa: E402

LINE = "1.0 2026-11-29T01:02:03.456Z Z0123 valheim.example.test A NOERROR UDP TWN1-C1 198.51.100.200 -"


@pytest.mark.parametrize("pattern, message, expected", [
    ("", LINE, True),
    ('" A "', LINE, True),
    ('" A "', LINE.replace(" A ", " AAAA "), False),
    ('" a "', LINE, False),  # case-sensitive
    ('" valheim.example.test A "', LINE, True),
    ('" valheim.example.test A "', LINE.replace("valheim", "VaLhEiM"), False),  # the 0x20 miss
    ("NOERROR UDP", LINE, True),
    ("NOERROR TCP", LINE, False),
    ("?TCP ?UDP", LINE, True),
    ('?" A " ?" AAAA "', LINE, True),  # the stack's filter with IPv6
    ('?" A " ?" AAAA "', LINE.replace(" A ", " AAAA "), True),
    ('?" A " ?" AAAA "', LINE.replace(" A ", " TXT "), False),
    ('?" A " ?" AAAA "', LINE.replace(" A ", " aaaa "), False),
    ("?TCP ?NXDOMAIN", LINE, False),
    ("NOERROR -UDP", LINE, False),
    ("NOERROR -TCP", LINE, True),
    (r"%[vV][aA][lL][hH][eE][iI][mM]\.example%", LINE.replace("valheim", "VALheim"), True),
    (r"%^1\.0%", LINE, True),
    (r"%^2\.0%", LINE, False),
])
def test_filter_patterns(pattern, message, expected):
    assert logfilter.matches(pattern, message) is expected


@pytest.mark.parametrize("pattern", ['"unclosed', "%no end", "%(group)%", "% space %", "{ $.a = 1 }", "[a, b]"])
def test_patterns_the_twin_refuses(pattern):
    with pytest.raises(logfilter.PatternError):
        logfilter.parse(pattern)


def test_query_log_line_has_route53_fields_in_order():
    line = query_log_line(1795915323.456, "Z0123", "VaLhEiM.example.test", "A", "NOERROR", "UDP", "198.51.100.200")
    fields = line.split(" ")
    assert fields == ["1.0", "2026-11-29T01:22:03.456Z", "Z0123", "VaLhEiM.example.test", "A", "NOERROR", "UDP",
                      "TWN1-C1", "198.51.100.200", "-"]


def test_the_demo_says_where_each_message_went():
    """The agent logs each sent message with where it went (`to`); the demo's timeline tells the
    operator's SNS copy from the players' webhook copy of the same alert."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
    from demo import where_to
    assert where_to("sns") == "to the operator (SNS)"
    assert where_to("discord[0]") == "to the players (Discord webhook)"
    assert where_to("slack[1]") == "to the players (Slack webhook)"
    assert where_to(None) == "(target not logged)"


def test_the_timeline_takes_the_capacity_from_the_woke_line_and_shows_the_players_notice_in_time_order():
    """The wake function tells the players after the capacity is set (a second's wait for wakes in
    flight together, then the post), so its duration is no longer the capacity step: the twin
    records each line the function prints with its time, and the timeline reads those."""
    import timeline

    t0 = 1000.0
    events = [
        {"t": t0, "source": "player", "event": "lookup"},
        {"t": t0 + 0.2, "source": "dns", "event": "query_logged"},
        {"t": t0 + 0.3, "source": "wake", "event": "wake_invoked", "result": "woken", "duration_ms": 1400.0},
        {"t": t0 + 0.35, "source": "wake", "event": "function_printed", "function": "WakeFunction",
         "line": "Woke container-manager-twin: a DNS query asked for x."},
        {"t": t0 + 0.9, "source": "asg", "event": "instance_started"},
        {"t": t0 + 1.7, "source": "wake", "event": "function_printed", "function": "WakeFunction",
         "line": "Told the players it is waking."},
    ]
    marks = {k: t for k, _, t in timeline.breakdown(events)}
    assert marks["capacity"] == pytest.approx(0.35) and marks["told"] == pytest.approx(1.7)
    assert marks["launch"] == pytest.approx(0.9) and marks["connected"] is None
    lines = timeline.render(timeline.breakdown(events))
    order = [next(i for i, line in enumerate(lines) if label in line)
             for label in ("desired capacity 1", "instance launched", "players told")]
    assert order == sorted(order), lines
    assert "+0.80" in lines[order[2]], "the notice's delta is from the step before it in time"
