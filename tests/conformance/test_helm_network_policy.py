"""The chart's NetworkPolicy admits clients on the API port only from the allowed namespaces,
and the metrics scraper (`networkPolicy.metricsNamespaceLabels`) on the admin port that its
PodMonitor scrapes, so enabling the policy does not blind the PodMonitor; and the operator's
replicas roll through ready standbys, keep one through a drain and spread over nodes."""

import pathlib

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llm-gateway"


def rendered(values):
    out = helm.Chart.load(str(CHART)).render(values, name="lgw", namespace="ai", is_install=True)
    documents = []
    for path, text in out.items():
        if path.endswith(".yaml"):
            documents.extend(d for d in yaml.safe_load_all(text) if d)
    return documents


def test_the_scraper_namespace_reaches_the_port_the_pod_monitor_scrapes():
    values = {
        "networkPolicy": {"enabled": True, "allowedNamespaceLabels": {"team": "apps"},
                          "metricsNamespaceLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "metrics": {"serviceMonitor": {"enabled": True}},
    }
    documents = rendered(values)
    policy = next(d for d in documents if d["kind"] == "NetworkPolicy")
    monitor = next(d for d in documents if d["kind"] == "PodMonitor")
    scraped = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert scraped == {"admin"}
    by_port = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule["from"])
    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert scraper in by_port[9090], by_port
    # Clients never reach the admin port, and the scraper gets nothing but it.
    assert {"namespaceSelector": {"matchLabels": {"team": "apps"}}} not in by_port[9090]
    assert scraper not in by_port[8000]


def test_the_operator_rolls_out_through_ready_standbys_and_keeps_one_through_a_drain():
    documents = rendered(None)
    operator = next(d for d in documents if d["kind"] == "Deployment"
                    and d["metadata"]["name"].endswith("-operator"))
    assert operator["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    budget = next(d for d in documents if d["kind"] == "PodDisruptionBudget"
                  and d["metadata"]["name"].endswith("-operator"))
    assert budget["spec"]["selector"] == operator["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] == 1
    single = rendered({"operator": {"replicas": 1}})
    assert not any(d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"].endswith("-operator")
                   for d in single), "a budget of one replica would block every drain"


def test_the_operator_replicas_spread_over_nodes_unless_told_otherwise():
    def spread(values):
        operator = next(d for d in rendered(values) if d["kind"] == "Deployment"
                        and d["metadata"]["name"].endswith("-operator"))
        return operator["spec"]["template"]["spec"].get("topologySpreadConstraints")

    default = spread(None)
    assert {c["topologyKey"] for c in default} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    operator = next(d for d in rendered(None) if d["kind"] == "Deployment"
                    and d["metadata"]["name"].endswith("-operator"))
    for constraint in default:
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway", "a one-node cluster still schedules"
        assert constraint["labelSelector"]["matchLabels"] == operator["spec"]["selector"]["matchLabels"]
    assert spread({"operator": {"topologySpreadConstraints": []}}) is None
