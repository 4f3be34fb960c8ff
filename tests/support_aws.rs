//! Test support for the AWS adapters: the shim in front of moto (`tests/shim/awsshim.py`).
//!
//! [`Shim::start`] runs the shim with the tests' venv Python (`CM_TEST_PYTHON`, or
//! `tests/.venv/bin/python`, which `tests/harness/setup.sh` creates) on free ports, waits
//! until it answers, and kills it on drop. The shim also exits when its stdin closes, so it
//! never outlives the test process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use container_manager_agent::aws::{BuildOptions, CloudAdapters, build_with};
use container_manager_agent::config::Config;

/// The AWS state `awsctl.setup` created in moto.
#[derive(Debug, Clone)]
pub struct World {
    pub zone_id: String,
    pub group: String,
    pub hook: String,
    pub instance_ids: Vec<String>,
    pub topic_arn: String,
    pub queue_url: String,
    pub region: String,
}

impl World {
    /// The instance the agent runs as (registered in the group).
    pub fn instance_id(&self) -> &str {
        &self.instance_ids[0]
    }
}

#[derive(Debug)]
pub struct Shim {
    child: Child,
    pub aws: String,
    pub imds: String,
    pub control: String,
}

pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CM_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run tests/harness/setup.sh (or set CM_TEST_PYTHON to a Python with moto[server], boto3 and cbor2)",
        p.display()
    );
    p
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

impl Shim {
    pub async fn start() -> Shim {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/shim/awsshim.py");
        let stderr = if std::env::var_os("AWSSHIM_VERBOSE").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(python())
            .arg("-u")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start the AWS shim");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(60),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the shim did not start within 60 s")
        .expect("read the shim's ports");
        let ports: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("shim said {line:?}: {e}"));
        let s = |k: &str| ports[k].as_str().unwrap().to_string();
        let shim = Shim {
            child,
            aws: s("aws"),
            imds: s("imds"),
            control: s("control"),
        };
        assert_eq!(shim.get("/_shim/health").await["ok"], json!(true));
        shim
    }

    pub async fn get(&self, path: &str) -> Value {
        http(&self.control, "GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        http(&self.control, "POST", path, Some(body)).await
    }

    /// Runs an awsctl helper against moto.
    pub async fn ctl(&self, name: &str, args: Value) -> Value {
        self.post(&format!("/_shim/ctl/{name}"), args).await
    }

    /// A hosted zone, a group with a termination hook and one instance, an SNS topic with an
    /// SQS subscription; IMDS set up as that instance, in service, with a public IPv4.
    pub async fn world(&self) -> World {
        let w = self.ctl("setup", json!({})).await;
        let s = |k: &str| {
            w[k].as_str()
                .unwrap_or_else(|| panic!("setup: no {k} in {w}"))
                .to_string()
        };
        let world = World {
            zone_id: s("zone_id"),
            group: s("group"),
            hook: s("hook"),
            instance_ids: w["instance_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect(),
            topic_arn: s("topic_arn"),
            queue_url: s("queue_url"),
            region: s("region"),
        };
        assert!(
            !world.instance_ids.is_empty(),
            "moto created no instance: {w}"
        );
        self.imds(json!({
            "instance-id": world.instance_id(),
            "region": world.region,
            "public-ipv4": PUBLIC_IP,
            "target-lifecycle-state": "InService",
            "role": "game-server",
        }))
        .await;
        world
    }

    /// Merges IMDS values (null removes one).
    pub async fn imds(&self, values: Value) {
        self.post("/_shim/imds", values).await;
    }

    pub async fn record(&self, world: &World, rtype: &str) -> Option<(i64, Vec<String>)> {
        let r = self
            .ctl(
                "record",
                json!({"zone_id": world.zone_id, "name": RECORD, "rtype": rtype}),
            )
            .await;
        if r.is_null() {
            return None;
        }
        let values = r["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        Some((r["ttl"].as_i64().unwrap(), values))
    }

    pub async fn upsert(&self, world: &World, rtype: &str, ttl: i64, value: &str) {
        self.ctl(
            "upsert",
            json!({"zone_id": world.zone_id, "name": RECORD, "rtype": rtype, "ttl": ttl, "value": value}),
        )
        .await;
    }

    pub async fn desired_capacity(&self, world: &World) -> i64 {
        self.ctl("group", json!({"name": world.group})).await["desired"]
            .as_i64()
            .unwrap()
    }

    pub async fn lifecycle_actions(&self) -> Vec<Value> {
        self.get("/_shim/lifecycle-actions")
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// The operations the AWS front received, in order.
    pub async fn operations(&self) -> Vec<String> {
        self.get("/_shim/requests")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["op"].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn messages(&self, world: &World) -> Vec<Value> {
        self.ctl("messages", json!({"queue_url": world.queue_url}))
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn metrics(&self, namespace: &str) -> Vec<Value> {
        self.ctl("metrics", json!({"namespace": namespace}))
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// Makes the AWS front unreachable for `seconds`.
    pub async fn outage(&self, seconds: f64, mode: &str, imds_too: bool) {
        self.post(
            "/_shim/outage",
            json!({"seconds": seconds, "mode": mode, "imds": imds_too}),
        )
        .await;
    }

    pub fn options(&self) -> BuildOptions {
        BuildOptions {
            endpoint_url: Some(self.aws.clone()),
            imds_endpoint: Some(self.imds.clone()),
            identity_budget: Duration::from_secs(10),
        }
    }

    /// The real adapters, pointed at the shim.
    pub async fn adapters(&self, config: &Config) -> CloudAdapters {
        build_with(config, &self.options()).await
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The instance's public address in the tests.
pub const PUBLIC_IP: &str = "198.51.100.7";
pub const RECORD: &str = "mc.example.test";

/// A minimal HTTP/1.1 client for the shim's control port.
async fn http(base: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let addr = base.trim_start_matches("http://");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 60 s"))
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert_eq!(status, 200, "{method} {path} -> {head}\n{payload}");
    serde_json::from_str(payload).unwrap_or_else(|e| panic!("{method} {path}: {e}: {payload}"))
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
