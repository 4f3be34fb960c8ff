//! # container-manager agent
//!
//! A daemon on the game server's EC2 instance. It points DNS at the instance on boot, counts
//! the game's inbound packets in the kernel and asks the game for its player count, watches
//! the game container, and scales the Auto Scaling group to zero when nobody plays, the game
//! crashes, or the instance has been up too long. Before the instance goes away it saves the
//! game and sets DNS back.
//!
//! The modules, each with one job:
//! - [`config`]: load `agent.toml` and validate it into typed values before any I/O.
//! - [`decide`]: the pure decision core. Observations and `now` in, actions and a wake-up
//!   time out; no clock, no I/O.
//! - [`activity`]: the packet counter (`AF_PACKET` + classic BPF) and the game probes.
//! - [`container`]: the game container through the Docker API: events, crash/stop
//!   classification, graceful stop.
//! - [`aws`]: instance metadata, Route53, Auto Scaling, CloudWatch and SNS adapters.
//! - [`notify`]: notifications: one message model, sinks for SNS and webhooks (Discord,
//!   Slack, JSON), sent apart from the run loop.
//! - [`run`]: the wiring: owned tasks, one cancellation token, the executor, the drain.
//! - [`retry`]: capped exponential backoff with a bound per attempt.
//! - [`logging`]: text, JSON or journald output.
//! - [`unit`]: the packaged systemd unit, printed for installs of the bare binary.
//!
//! The architecture and the reasoning behind it are in `docs/design.md`.

pub mod activity;
pub mod aws;
pub mod config;
pub mod container;
pub mod decide;
pub mod logging;
pub mod logship;
pub mod notify;
pub mod retry;
pub mod run;
pub mod unit;
