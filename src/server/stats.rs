//! Counters behind the four-letter words: server-wide and per connection.

use std::time::{Instant, SystemTime};

use crate::jute::OpCode;

/// Request latency summary in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub min_ms: u64,
    pub max_ms: u64,
    pub total_ms: u64,
    pub count: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            min_ms: u64::MAX,
            max_ms: 0,
            total_ms: 0,
            count: 0,
        }
    }
}

impl Latency {
    pub fn record(&mut self, ms: u64) {
        self.min_ms = self.min_ms.min(ms);
        self.max_ms = self.max_ms.max(ms);
        self.total_ms += ms;
        self.count += 1;
    }

    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min_ms
        }
    }

    /// Average with ZooKeeper's formatting precision (a float).
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms as f64 / self.count as f64
        }
    }
}

/// Server-wide counters (reset by `srst`).
#[derive(Debug, Default)]
pub struct ServerStats {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub latency: Latency,
    pub outstanding_requests: u64,
}

impl ServerStats {
    pub fn reset(&mut self) {
        self.packets_received = 0;
        self.packets_sent = 0;
        self.latency = Latency::default();
    }
}

/// Per-connection counters (reset by `crst`).
#[derive(Debug)]
pub struct ConnStats {
    pub established: SystemTime,
    pub received: u64,
    pub sent: u64,
    pub last_op: Option<OpCode>,
    pub last_cxid: i32,
    pub last_zxid: i64,
    pub last_response: Option<SystemTime>,
    pub last_latency_ms: u64,
    pub latency: Latency,
    pub last_request_at: Option<Instant>,
}

impl ConnStats {
    pub fn new() -> Self {
        ConnStats {
            established: SystemTime::now(),
            received: 0,
            sent: 0,
            last_op: None,
            last_cxid: -1,
            last_zxid: -1,
            last_response: None,
            last_latency_ms: 0,
            latency: Latency::default(),
            last_request_at: None,
        }
    }

    pub fn reset(&mut self) {
        self.received = 0;
        self.sent = 0;
        self.last_op = None;
        self.last_cxid = -1;
        self.last_zxid = -1;
        self.last_response = None;
        self.last_latency_ms = 0;
        self.latency = Latency::default();
    }
}

impl Default for ConnStats {
    fn default() -> Self {
        Self::new()
    }
}
