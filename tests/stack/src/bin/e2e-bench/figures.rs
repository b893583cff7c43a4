//! What an approach's run measured ([`Figures`]): one [`Sample`] per scale-out, the
//! load's requests and failures, the reloads, the control plane's CPU time, the errors;
//! and their percentiles as the JSON figures.

use serde_json::{json, Value};
use stack::percentile;

/// One scale-out: when it was asked for, when Auto Scaling announced the instance, when
/// HAProxy was told, when the member served.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub instance: String,
    /// SetDesiredCapacity was sent (unix ms).
    pub requested_ms: u64,
    /// The emulator emitted the instance's first Auto Scaling event (unix ms): the
    /// lifecycle action for `ours`, Launch Successful for the baselines (no hooks).
    pub event_ms: Option<u64>,
    /// The reactor received that event (`ours` only).
    pub received_ms: Option<u64>,
    /// `ours`: the SendCommand carrying the change arrived at the emulator (unix ms).
    pub send_ms: Option<u64>,
    /// `ours`: the command was answered (its InProgress status event, unix ms).
    pub sent_ms: Option<u64>,
    /// `ours`: the document's command started on the last host (unix ms).
    pub host_ms: Option<u64>,
    /// Its server left MAINT with its address on the last host (unix ms).
    pub ready_ms: Option<u64>,
    /// Its server was UP (health checks passed) on the last host (unix ms).
    pub up_ms: Option<u64>,
    /// `ours`: the last host's report of it `up` reached the inbox (SQS's
    /// `SentTimestamp`, unix ms).
    pub reported_ms: Option<u64>,
    /// `ours`: its launch action was completed (CompleteLifecycleAction served, unix ms).
    pub completed_ms: Option<u64>,
    /// It served its first request through HAProxy (unix ms).
    pub first_ms: u64,
}

/// Everything one approach's run measured.
#[derive(Debug, Default)]
pub struct Figures {
    pub requests: u64,
    pub failed: u64,
    pub reloads: u64,
    pub samples: Vec<Sample>,
    pub control_cpu_s: f64,
    pub cycles: usize,
    pub errors: Vec<String>,
    /// Mixed: requests in flight on a leaving member that did not complete with 200.
    pub slow_failed: u64,
    /// Spot: the warning -> the member out of every host (drained, slot released), ms.
    pub warning_to_drained: Vec<u64>,
}

/// `to - from` over the samples having both.
pub fn spans(
    samples: &[Sample],
    from: impl Fn(&Sample) -> Option<u64>,
    to: impl Fn(&Sample) -> Option<u64>,
) -> Vec<u64> {
    samples
        .iter()
        .filter_map(|s| Some(to(s)?.saturating_sub(from(s)?)))
        .collect()
}

/// A sample's timestamp, for [`spans`].
type At = fn(&Sample) -> Option<u64>;

impl Figures {
    /// Event -> first request served (with the health-check rise).
    pub fn serving(&self) -> Vec<u64> {
        spans(&self.samples, |s| s.event_ms, |s| Some(s.first_ms))
    }

    /// Event -> the member's server left MAINT on every host (the rise excluded).
    pub fn excl_check(&self) -> Vec<u64> {
        spans(&self.samples, |s| s.event_ms, |s| s.ready_ms)
    }

    /// The JSON figures: [`Figures::spot_json`] when the approach sent Spot warnings,
    /// otherwise the event- and scale-request-to-serving percentiles and the stages.
    pub fn json(&self) -> Value {
        if !self.warning_to_drained.is_empty() {
            return self.spot_json();
        }
        let (serving, excl) = (self.serving(), self.excl_check());
        let p = |from: At, to: At| {
            let v = spans(&self.samples, from, to);
            (percentile(&v, 50.0), percentile(&v, 99.0))
        };
        let req = p(|s| Some(s.requested_ms), |s| Some(s.first_ms));
        let req_excl = p(|s| Some(s.requested_ms), |s| s.ready_ms);
        let launch = p(|s| Some(s.requested_ms), |s| s.event_ms);
        let delivery = p(|s| s.event_ms, |s| s.received_ms);
        json!({
            "stages": self.stages_json(),
            "requests": self.requests,
            "failed_requests": self.failed + self.slow_failed,
            "reloads": self.reloads,
            "event_to_serving_ms_p50": percentile(&serving, 50.0),
            "event_to_serving_ms_p99": percentile(&serving, 99.0),
            "event_to_serving_excl_check_ms_p50": percentile(&excl, 50.0),
            "event_to_serving_excl_check_ms_p99": percentile(&excl, 99.0),
            "control_cpu_s": self.rounded_cpu_s(),
            "scale_request_to_serving_ms_p50": req.0,
            "scale_request_to_serving_ms_p99": req.1,
            "scale_request_to_serving_excl_check_ms_p50": req_excl.0,
            "scale_request_to_serving_excl_check_ms_p99": req_excl.1,
            "scale_request_to_event_ms_p50": launch.0,
            "scale_request_to_event_ms_p99": launch.1,
            "event_delivery_ms_p50": delivery.0,
            "event_delivery_ms_p99": delivery.1,
            "cycles": self.cycles,
            "samples": excl.len(),
            "errors": self.errors,
        })
    }

    /// `spot`'s figures: the warning to drained, the replacement's event to serving.
    fn spot_json(&self) -> Value {
        let serving = self.serving();
        json!({
            "requests": self.requests,
            "failed_requests": self.failed,
            "reloads": self.reloads,
            "warning_to_drained_ms_p50": percentile(&self.warning_to_drained, 50.0),
            "warning_to_drained_ms_p99": percentile(&self.warning_to_drained, 99.0),
            "replacement_event_to_serving_ms_p50": percentile(&serving, 50.0),
            "replacement_event_to_serving_ms_p99": percentile(&serving, 99.0),
            "control_cpu_s": self.rounded_cpu_s(),
            "cycles": self.cycles,
            "samples": serving.len(),
            "errors": self.errors,
        })
    }

    /// The stages from the event to the socket and on to the completed lifecycle
    /// action, each with its p50, p99 and sample count; `null` unless the reactor's
    /// stages were seen (`ours`).
    fn stages_json(&self) -> Value {
        // The stages to the socket other than the emulated SSM hop (SendCommand
        // answered, the command started on the hosts), per sample.
        let ours_only: Vec<u64> = self
            .samples
            .iter()
            .filter_map(|s| {
                let a = s.received_ms?.saturating_sub(s.event_ms?);
                let b = s.send_ms?.saturating_sub(s.received_ms?);
                let e = s.ready_ms?.saturating_sub(s.host_ms?);
                Some(a + b + e)
            })
            .collect();
        if ours_only.is_empty() {
            return Value::Null;
        }
        let stage = |from: At, to: At| {
            let v = spans(&self.samples, from, to);
            json!({"p50": percentile(&v, 50.0), "p99": percentile(&v, 99.0), "samples": v.len()})
        };
        json!({
            "event_to_reactor_ms": stage(|s| s.event_ms, |s| s.received_ms),
            "discovery_ms": stage(|s| s.received_ms, |s| s.send_ms),
            "send_command_answered_ms": stage(|s| s.send_ms, |s| s.sent_ms),
            "host_command_started_ms": stage(|s| s.sent_ms, |s| s.host_ms),
            "out_of_maint_ms": stage(|s| s.host_ms, |s| s.ready_ms),
            "without_ssm_hop_ms_p50": percentile(&ours_only, 50.0),
            "without_ssm_hop_ms_p99": percentile(&ours_only, 99.0),
            "health_rise_ms": stage(|s| s.ready_ms, |s| s.up_ms),
            "up_to_reported_ms": stage(|s| s.up_ms, |s| s.reported_ms),
            "reported_to_completed_ms": stage(|s| s.reported_ms, |s| s.completed_ms),
            "event_to_completed_ms": stage(|s| s.event_ms, |s| s.completed_ms),
        })
    }

    /// The control plane's CPU seconds, to the millisecond.
    fn rounded_cpu_s(&self) -> f64 {
        (self.control_cpu_s * 1000.0).round() / 1000.0
    }
}
