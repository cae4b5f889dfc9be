//! Prometheus metrics of the controller: reconciles, failures by category, build and launch durations,
//! Chaincodes by phase.
use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::crd::Phase;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<Labels, Counter>,
    pub build_seconds: Histogram,
    pub launch_seconds: Histogram,
    pub by_phase: Family<Labels, Gauge>,
    /// Last phase seen per Chaincode (namespace/name), so the gauge moves by one on change.
    phases: Mutex<HashMap<String, Phase>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chaincode_operator");
        let reconciles = Counter::default();
        let failures = Family::<Labels, Counter>::default();
        // 1 s .. ~4.5 h: builds take minutes, launches seconds.
        let build_seconds = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        let launch_seconds = Histogram::new(exponential_buckets(0.5, 2.0, 12));
        let by_phase = Family::<Labels, Gauge>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed reconciles by category (spec, api, conflict, dependency)",
            failures.clone(),
        );
        registry.register(
            "build_duration_seconds",
            "Build Job duration",
            build_seconds.clone(),
        );
        registry.register(
            "launch_duration_seconds",
            "From Pod creation to Ready",
            launch_seconds.clone(),
        );
        registry.register("chaincodes", "Chaincodes by phase", by_phase.clone());
        Self {
            registry,
            reconciles,
            failures,
            build_seconds,
            launch_seconds,
            by_phase,
            phases: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn failure(&self, category: &str) {
        self.failures
            .get_or_create(&vec![("category".into(), category.into())])
            .inc();
    }

    /// Records the phase of one Chaincode (None when it is gone).
    pub fn set_phase(&self, key: &str, phase: Option<Phase>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        let previous = match phase {
            Some(p) => phases.insert(key.to_string(), p),
            None => phases.remove(key),
        };
        if previous == phase {
            return;
        }
        let gauge = |p: Phase| {
            self.by_phase
                .get_or_create(&vec![("phase".into(), p.as_str().into())])
                .clone()
        };
        if let Some(p) = previous {
            gauge(p).dec();
        }
        if let Some(p) = phase {
            gauge(p).inc();
        }
    }

    /// OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_gauge_moves_one_chaincode_between_phases() {
        let m = Metrics::default();
        m.set_phase("ns/a", Some(Phase::Building));
        m.set_phase("ns/a", Some(Phase::Ready));
        m.set_phase("ns/b", Some(Phase::Ready));
        let text = m.render();
        assert!(
            text.contains("chaincode_operator_chaincodes{phase=\"Building\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("chaincode_operator_chaincodes{phase=\"Ready\"} 2"),
            "{text}"
        );
        m.set_phase("ns/a", None);
        assert!(
            m.render()
                .contains("chaincode_operator_chaincodes{phase=\"Ready\"} 1")
        );
    }
}
