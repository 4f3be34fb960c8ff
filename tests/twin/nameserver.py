"""The twin's DNS side: an authoritative name server for the hosted zone, Route53 query logging,
and CloudWatch Logs' subscription delivery to the wake function.

- `NameServer` answers the zone from the emulator's Route53 records at query time, with their
  TTL (dnslib, UDP and TCP on port 53 of the twin's "internet" address). The name in the answer
  keeps the letter case of the question, as resolvers using DNS 0x20 expect.
- For every query it writes a query-log line in Route53's format (docs/aws-sources.md):
  `1.0 <timestamp> <hosted zone id> <query name> <type> <rcode> <protocol> <edge> <resolver> <subnet>`
  to the log group of the zone's query logging configuration in the emulator, if there is one
  (no configuration, no log lines: as in Route53). The name is logged as the resolver sent it:
  Route53's documentation does not say whether it keeps the case, so the twin takes the case
  that a case-sensitive filter would miss.
- `LogDelivery` plays CloudWatch Logs' subscription filters: each new line is matched against
  the stack's filter pattern (tests/twin/logfilter.py) and the matching lines are delivered as
  `{"awslogs": {"data": base64(gzip(json))}}` to the destination function's code.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import boto3
from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

import logfilter

EDGE = "TWN1-C1"  # the "edge location" field of the twin's log lines
OWNER = "123456789012"


def _client(moto_url: str, service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=moto_url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def query_log_line(when: float, zone_id: str, name: str, qtype: str, rcode: str, protocol: str,
                   resolver: str) -> str:
    stamp = dt.datetime.fromtimestamp(when, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"1.0 {stamp} {zone_id} {name} {qtype} {rcode} {protocol} {EDGE} {resolver} -"


@dataclass
class Subscriber:
    log_group: str
    filter_name: str
    pattern: str
    deliver: Callable[[dict], Any]  # the function's handler, called with the awslogs event


class LogDelivery:
    """Writes log events to the emulator and hands matching ones to subscription filters, one
    batch per delivery, in order, on a thread of its own (as CloudWatch Logs does, apart from
    the writer)."""

    def __init__(self, moto_url: str, on_event: Callable[..., None]) -> None:
        self.logs = _client(moto_url, "logs")
        self.subscribers: list[Subscriber] = []
        self.on_event = on_event
        self.queue: queue.Queue = queue.Queue()
        self.streams: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.next_id = 36000000000000000000000000000000000000000000000000000000
        self.thread = threading.Thread(target=self._run, daemon=True, name="log-delivery")
        self.thread.start()

    def subscribe(self, sub: Subscriber) -> None:
        logfilter.parse(sub.pattern)  # a pattern CloudWatch Logs would refuse fails here
        self.subscribers.append(sub)

    def put(self, group: str, stream: str, message: str, when: float) -> None:
        with self.lock:
            if (group, stream) not in self.streams:
                try:
                    self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
                except self.logs.exceptions.ResourceAlreadyExistsException:
                    pass
                self.streams.add((group, stream))
            self.logs.put_log_events(logGroupName=group, logStreamName=stream,
                                     logEvents=[{"timestamp": int(when * 1000), "message": message}])
            self.next_id += 1
            event = {"id": str(self.next_id), "timestamp": int(when * 1000), "message": message}
        self.queue.put((group, stream, event))

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                first = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            pending = [first]
            while True:
                try:
                    pending.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            for sub in self.subscribers:
                by_stream: dict[str, list[dict]] = {}
                for group, stream, event in pending:
                    if group == sub.log_group and logfilter.matches(sub.pattern, event["message"]):
                        by_stream.setdefault(stream, []).append(event)
                for stream, events in by_stream.items():
                    batch = {
                        "messageType": "DATA_MESSAGE", "owner": OWNER, "logGroup": sub.log_group,
                        "logStream": stream, "subscriptionFilters": [sub.filter_name], "logEvents": events,
                    }
                    payload = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(batch).encode())).decode()}}
                    started = time.time()
                    try:
                        result = sub.deliver(payload)
                        error = None
                    except Exception as e:  # a failing function is logged, as Lambda would
                        result, error = None, f"{type(e).__name__}: {e}"
                    self.on_event("wake_invoked", t=started, lines=len(events), result=result, error=error,
                                  duration_ms=round((time.time() - started) * 1000, 1))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


class _QuietLogger:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None


class NameServer(BaseResolver):
    """Authoritative for one hosted zone of the emulator."""

    def __init__(self, moto_url: str, zone_id: str, zone_name: str, address: str, delivery: LogDelivery,
                 on_event: Callable[..., None]) -> None:
        self.route53 = _client(moto_url, "route53")
        self.zone_id = zone_id
        self.zone = zone_name.lower().rstrip(".")
        self.delivery = delivery
        self.on_event = on_event
        self.address = address
        self.servers = [DNSServer(self, address=address, port=53, logger=_QuietLogger()),
                        DNSServer(self, address=address, port=53, tcp=True, logger=_QuietLogger())]
        for s in self.servers:
            s.start_thread()

    def log_group(self) -> str | None:
        # All configurations, filtered here: moto 5.2 answers NoSuchHostedZone when asked by zone.
        configs = [c for c in self.route53.list_query_logging_configs()["QueryLoggingConfigs"]
                   if c["HostedZoneId"].split("/")[-1] == self.zone_id]
        if not configs:
            return None
        arn = configs[0]["CloudWatchLogsLogGroupArn"]
        return arn.split(":log-group:", 1)[1].removesuffix(":*")

    def records(self) -> list[dict]:
        out, start = [], {}
        while True:
            page = self.route53.list_resource_record_sets(HostedZoneId=self.zone_id, **start)
            out.extend(page["ResourceRecordSets"])
            if not page.get("IsTruncated"):
                return out
            start = {"StartRecordName": page["NextRecordName"], "StartRecordType": page["NextRecordType"]}

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        when = time.time()
        reply = request.reply()
        asked = str(request.q.qname).rstrip(".")
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        name = asked.lower()
        answers: list[str] = []
        if name != self.zone and not name.endswith("." + self.zone):
            reply.header.rcode = RCODE.REFUSED
        else:
            found = [r for r in self.records() if r["Name"].lower().rstrip(".") == name]
            if not found:
                reply.header.rcode = RCODE.NXDOMAIN
            for r in found:
                if r["Type"] != qtype or qtype not in ("A", "AAAA"):
                    continue
                for v in r.get("ResourceRecords", []):
                    rdata = A(v["Value"]) if qtype == "A" else AAAA(v["Value"])
                    reply.add_answer(RR(request.q.qname, request.q.qtype, ttl=int(r["TTL"]), rdata=rdata))
                    answers.append(v["Value"])
        rcode = RCODE.get(reply.header.rcode)
        protocol = "TCP" if getattr(handler, "protocol", "udp") == "tcp" else "UDP"
        resolver = handler.client_address[0]
        self.on_event("dns_query", t=when, name=asked, qtype=qtype, rcode=rcode, answer=answers, resolver=resolver)
        try:
            group = self.log_group()
            if group is not None and rcode != "REFUSED":
                line = query_log_line(when, self.zone_id, asked, qtype, rcode, protocol, resolver)
                self.delivery.put(group, f"{self.zone_id}/{EDGE}", line, when)
                self.on_event("query_logged", t=time.time(), line=line)
        except Exception as e:  # noqa: BLE001 - the answer goes out; the twin reports the failure
            self.on_event("query_log_failed", t=time.time(), error=repr(e))
        return reply

    def close(self) -> None:
        for s in self.servers:
            s.stop()
            s.server.server_close()
