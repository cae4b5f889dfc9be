//! Prometheus metrics of the controller: reconciles, failures by category, build and launch durations,
//! Chaincodes by phase.
use std::collections::HashMap;

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
        }
    }
}

impl Metrics {
    pub fn failure(&self, category: &str) {
        self.failures
            .get_or_create(&vec![("category".into(), category.into())])
            .inc();
    }

    /// Sets the by-phase gauge from the phases of all Chaincodes known now (the controller's cache),
    /// so deleted Chaincodes drop out without needing a reconcile.
    pub fn count_phases(&self, phases: impl IntoIterator<Item = Phase>) {
        let mut counts: HashMap<Phase, i64> = Phase::ALL.iter().map(|p| (*p, 0)).collect();
        for phase in phases {
            *counts.entry(phase).or_default() += 1;
        }
        for (phase, count) in counts {
            self.by_phase
                .get_or_create(&vec![("phase".into(), phase.as_str().into())])
                .set(count);
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
    fn phase_gauge_counts_the_chaincodes_known_now() {
        let m = Metrics::default();
        m.count_phases([Phase::Building, Phase::Ready, Phase::Ready]);
        m.count_phases([Phase::Ready, Phase::Ready]);
        let text = m.render();
        assert!(
            text.contains("chaincode_operator_chaincodes{phase=\"Building\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("chaincode_operator_chaincodes{phase=\"Ready\"} 2"),
            "{text}"
        );
        m.count_phases([Phase::Ready]);
        assert!(
            m.render()
                .contains("chaincode_operator_chaincodes{phase=\"Ready\"} 1")
        );
    }
}
