//! [`ClusterMqttCollector`]: what the node's plain MQTT routing across the
//! cluster did, and its route table's size, read at scrape time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::constant::{counter, gauges};

use crate::cluster_mqtt::ClusterMqtt;

/// Reads the node's [`ClusterMqtt`] on every scrape.
#[derive(Clone)]
pub struct ClusterMqttCollector {
    mqtt: Arc<ClusterMqtt>,
}

impl std::fmt::Debug for ClusterMqttCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMqttCollector")
            .finish_non_exhaustive()
    }
}

impl ClusterMqttCollector {
    /// A collector over `mqtt`.
    pub fn new(mqtt: Arc<ClusterMqtt>) -> ClusterMqttCollector {
        ClusterMqttCollector { mqtt }
    }
}

impl Collector for ClusterMqttCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let routes = self.mqtt.routes();
        gauges(
            &mut encoder,
            &[
                (
                    "cluster_mqtt_routes",
                    "Entries of the cluster's MQTT route table (node, filter or shared group), this node's included",
                    routes.len(),
                ),
                (
                    "cluster_mqtt_route_nodes",
                    "Nodes with at least one MQTT route, as this node knows them",
                    routes.nodes().len(),
                ),
            ],
        )?;
        let c = &self.mqtt.counts;
        for (name, help, value) in [
            (
                "cluster_mqtt_forwarded",
                "Plain MQTT publishes and wills this node forwarded to other nodes (bus records)",
                &c.forwarded,
            ),
            (
                "cluster_mqtt_received",
                "Plain MQTT records of other nodes this node routed to its sessions",
                &c.received,
            ),
            (
                "cluster_mqtt_not_addressed",
                "Plain MQTT records of other nodes this node read but had no subscriber for",
                &c.not_addressed,
            ),
            (
                "cluster_mqtt_forward_errors",
                "Plain MQTT forwards the bus or the store refused (the publisher was told)",
                &c.forward_errors,
            ),
            (
                "cluster_mqtt_retained_written",
                "Retained MQTT messages and deletions this node wrote to the store",
                &c.retained_written,
            ),
            (
                "cluster_mqtt_retained_loaded",
                "Retained MQTT messages loaded from the store at start",
                &c.retained_loaded,
            ),
            (
                "cluster_mqtt_retained_over_quota",
                "Retained messages of other nodes kept although over their owner's quota here",
                &c.retained_over_quota,
            ),
            (
                "cluster_mqtt_route_records",
                "Route change records this node announced",
                &c.route_records,
            ),
            (
                "cluster_mqtt_route_errors",
                "Route announcements the bus refused (the whole set is sent again)",
                &c.route_errors,
            ),
            (
                "cluster_mqtt_nodes_expired",
                "Nodes whose MQTT routes this node dropped when their lease ran out",
                &c.nodes_expired,
            ),
            (
                "cluster_mqtt_store_errors",
                "Store operations of the plain MQTT routing that failed (live nodes, retained set, guarded wills)",
                &c.store_errors,
            ),
            (
                "cluster_mqtt_orphaned_wills",
                "Wills of connections on dead nodes this node published",
                &c.orphaned_wills,
            ),
        ] {
            counter(&mut encoder, name, help, value.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}
