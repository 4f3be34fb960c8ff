"""The custom-resource function (DNS record cleanup, query logging) against moto.

moto's CloudFormation would run it in Docker, so test_deploy leaves these resources out and
this file plays CloudFormation: it sends the events and reads the responses.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conftest import function_code, load_function

NAME = "valheim.example.com"


class _Responses(BaseHTTPRequestHandler):
    received = []

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def response_url():
    _Responses.received = []
    server = HTTPServer(("127.0.0.1", 0), _Responses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response", _Responses.received
    server.shutdown()


class _Context:
    log_stream_name = "2026/11/22/[$LATEST]abc"


@pytest.fixture(params=["main", "wake"])
def helper(request, aws, main_template, wake_template):
    template = main_template if request.param == "main" else wake_template
    return load_function(function_code(template, "HelperFunction"), "helper", {})


@pytest.fixture
def zone(aws):
    return aws("route53").create_hosted_zone(Name="example.com", CallerReference="t")["HostedZone"]["Id"].split("/")[-1]


def send(helper, response_url, request, resource_type, props, physical=None):
    url, received = response_url
    event = {"RequestType": request, "ResponseURL": url, "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/game/x",
             "RequestId": f"r{len(received)}", "LogicalResourceId": "Thing", "ResourceType": resource_type,
             "ResourceProperties": {"ServiceToken": "arn:aws:lambda:x", **props}}
    if physical:
        event["PhysicalResourceId"] = physical
    helper.handler(event, _Context())
    return received[-1]


def records(aws, zone, name=NAME):
    listed = aws("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {(r["Type"], tuple(v["Value"] for v in r["ResourceRecords"])) for r in listed
            if r["Name"].rstrip(".") == name}


def point_at(aws, zone, rtype, value):
    aws("route53").change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": NAME, "Type": rtype, "TTL": 1,
                                                  "ResourceRecords": [{"Value": value}]}}]})


def record_props(zone, name=NAME):
    return {"HostedZoneId": zone, "RecordName": name, "Address": "0.0.0.0", "Ttl": "1"}


def test_record_is_created_at_the_off_address_and_deleted_whatever_it_holds(helper, aws, zone, response_url):
    created = send(helper, response_url, "Create", "Custom::ServerRecord", record_props(zone))
    assert created["Status"] == "SUCCESS", created["Reason"]
    assert records(aws, zone) == {("A", ("0.0.0.0",))}
    # The agent points the record at the instance (and may add AAAA).
    point_at(aws, zone, "A", "203.0.113.7")
    point_at(aws, zone, "AAAA", "2001:db8::7")
    deleted = send(helper, response_url, "Delete", "Custom::ServerRecord", record_props(zone),
                   physical=created["PhysicalResourceId"])
    assert deleted["Status"] == "SUCCESS", deleted["Reason"]
    assert records(aws, zone) == set()


def test_update_of_other_properties_leaves_a_live_record_alone(helper, aws, zone, response_url):
    created = send(helper, response_url, "Create", "Custom::ServerRecord", record_props(zone))
    point_at(aws, zone, "A", "203.0.113.7")
    updated = send(helper, response_url, "Update", "Custom::ServerRecord", {**record_props(zone), "Ttl": "1"},
                   physical=created["PhysicalResourceId"])
    assert updated["PhysicalResourceId"] == created["PhysicalResourceId"]
    assert records(aws, zone) == {("A", ("203.0.113.7",))}


def test_renaming_creates_the_new_record_and_a_new_id(helper, aws, zone, response_url):
    created = send(helper, response_url, "Create", "Custom::ServerRecord", record_props(zone))
    updated = send(helper, response_url, "Update", "Custom::ServerRecord", record_props(zone, "game.example.com"),
                   physical=created["PhysicalResourceId"])
    assert updated["Status"] == "SUCCESS"
    # A new physical id makes CloudFormation send Delete for the old one.
    assert updated["PhysicalResourceId"] != created["PhysicalResourceId"]
    assert records(aws, zone, "game.example.com") == {("A", ("0.0.0.0",))}


def test_delete_after_a_failed_create_succeeds(helper, aws, zone, response_url):
    failed = send(helper, response_url, "Create", "Custom::ServerRecord", record_props("ZNOSUCHZONE"))
    assert failed["Status"] == "FAILED" and failed["Reason"]
    deleted = send(helper, response_url, "Delete", "Custom::ServerRecord", record_props("ZNOSUCHZONE"),
                   physical=failed["PhysicalResourceId"])
    assert deleted["Status"] == "SUCCESS"


def test_query_logging_is_created_and_deleted(helper, aws, zone, response_url):
    logs = aws("logs")
    logs.create_log_group(logGroupName="/aws/route53/container-manager-valheim")
    arn = logs.describe_log_groups()["logGroups"][0]["arn"]
    assert arn.endswith(":*")
    props = {"HostedZoneId": zone, "LogGroupArn": arn}
    created = send(helper, response_url, "Create", "Custom::QueryLogging", props)
    assert created["Status"] == "SUCCESS", created["Reason"]
    # (moto 5.2 answers NoSuchHostedZone to a zone filter here, so list them all)
    (config,) = aws("route53").list_query_logging_configs()["QueryLoggingConfigs"]
    assert config["HostedZoneId"] == zone
    assert config["Id"] == created["PhysicalResourceId"]
    deleted = send(helper, response_url, "Delete", "Custom::QueryLogging", props, physical=config["Id"])
    assert deleted["Status"] == "SUCCESS", deleted["Reason"]
    assert aws("route53").list_query_logging_configs()["QueryLoggingConfigs"] == []
    again = send(helper, response_url, "Delete", "Custom::QueryLogging", props, physical=config["Id"])
    assert again["Status"] == "SUCCESS", again["Reason"]
