//! [`VipControl`]: the VIP side of a running node, started with it: the
//! holder, the standing and preemption loop, and the `notify` runner.

use super::fitness::Fitness;
use super::holder::Holder;
use super::notify::notifier;
use super::report::VipReport;
use super::standing::standing;
use crate::handle::Cluster;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// The running VIP controller.
pub struct VipControl {
    report: Arc<Mutex<VipReport>>,
    stop: Arc<Notify>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    others: Vec<tokio::task::JoinHandle<()>>,
}

impl VipControl {
    /// Starts holding, reporting and preempting for this node.
    /// `election_min`: the cluster's shortest election timeout (the VIP's
    /// lifetime on the interface follows it).
    pub fn start(
        cluster: Arc<Cluster>,
        fitness: Fitness,
        data_dir: PathBuf,
        election_min: std::time::Duration,
    ) -> VipControl {
        let report = Arc::new(Mutex::new(VipReport {
            node: cluster.id(),
            interface: fitness.settings.interface.clone(),
            ..Default::default()
        }));
        let fitness = Arc::new(fitness);
        let stop = Arc::new(Notify::new());
        let (notify_tx, notify_rx) = mpsc::unbounded_channel();
        let mut others = Vec::new();
        if let Some(cmd) = fitness.settings.notify.clone() {
            others.push(tokio::spawn(notifier(cmd, notify_rx)));
        }
        others.push(tokio::spawn(standing(cluster.clone(), fitness.clone())));
        let holder = Holder::new(
            cluster.clone(),
            fitness,
            data_dir,
            report.clone(),
            notify_tx,
            election_min,
        );
        let task = tokio::spawn(holder.run(stop.clone()));
        {
            let report = report.clone();
            cluster.set_reporter(move || {
                serde_json::to_vec(&*report.lock().expect("vip report")).unwrap_or_default()
            });
        }
        VipControl {
            report,
            stop,
            task: Mutex::new(Some(task)),
            others,
        }
    }

    /// This node's report now.
    pub fn report(&self) -> VipReport {
        self.report.lock().expect("vip report").clone()
    }

    /// Releases every VIP this node holds and stops.
    pub async fn stop(&self) {
        self.stop.notify_one();
        let task = self.task.lock().expect("vip task").take();
        if let Some(t) = task {
            let _ = t.await;
        }
        for t in &self.others {
            t.abort();
        }
    }
}
