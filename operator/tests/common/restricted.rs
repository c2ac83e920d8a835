//! The restricted Pod Security Standard (which includes the baseline one), as the Kubernetes
//! documentation states its rules (https://kubernetes.io/docs/concepts/security/pod-security-standards/),
//! checked on a pod spec given as JSON, plus the operator's own rule that no pod gets a
//! service-account token by default (`automountServiceAccountToken: false`).

use serde_json::Value;

/// Volume types the restricted profile allows.
const VOLUME_TYPES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sysctls the baseline profile allows.
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types the baseline profile allows.
const SELINUX_TYPES: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Every rule `pod` (a `PodSpec`, with its template's `annotations` when any) breaks, one
/// message each; empty when it meets the restricted profile.
pub fn violations(pod: &Value, annotations: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut fail = |rule: &str| out.push(rule.to_owned());
    let pod_context = &pod["securityContext"];
    if pod["automountServiceAccountToken"] != Value::Bool(false) {
        fail("automountServiceAccountToken must be false");
    }
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[field] == Value::Bool(true) {
            fail(&format!("host namespaces: {field} must not be true"));
        }
    }
    if pod_context["windowsOptions"]["hostProcess"] == Value::Bool(true) {
        fail("HostProcess: securityContext.windowsOptions.hostProcess must not be true");
    }
    for volume in array(&pod["volumes"]) {
        let name = volume["name"].as_str().unwrap_or("?");
        let kinds: Vec<&String> = volume
            .as_object()
            .map(|o| o.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        for kind in kinds {
            if !VOLUME_TYPES.contains(&kind.as_str()) {
                fail(&format!("volume types: volume {name} is of type {kind}"));
            }
        }
    }
    for sysctl in array(&pod_context["sysctls"]) {
        let name = sysctl["name"].as_str().unwrap_or("?");
        if !SAFE_SYSCTLS.contains(&name) {
            fail(&format!("sysctls: {name} is not a safe sysctl"));
        }
    }
    check_selinux(&pod_context["seLinuxOptions"], "pod", &mut fail);
    check_apparmor(&pod_context["appArmorProfile"], "pod", &mut fail);
    if pod_context["runAsUser"] == 0 {
        fail("running as non-root user: pod runAsUser must not be 0");
    }
    let pod_non_root = pod_context["runAsNonRoot"] == Value::Bool(true);
    let pod_seccomp = seccomp_type(&pod_context["seccompProfile"]);
    if let Some(kind) = pod_seccomp
        && !["RuntimeDefault", "Localhost"].contains(&kind)
    {
        fail(&format!("seccomp: pod profile {kind}"));
    }
    if let Some(annotations) = annotations.as_object() {
        for (key, value) in annotations {
            let value = value.as_str().unwrap_or_default();
            if key.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && value != "runtime/default"
                && !value.starts_with("localhost/")
            {
                fail(&format!("AppArmor: annotation {key}: {value}"));
            }
        }
    }
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|list| array(&pod[list]));
    let mut count = 0;
    for container in containers {
        count += 1;
        let name = container["name"].as_str().unwrap_or("?");
        let context = &container["securityContext"];
        let mut fail_in = |rule: &str| fail(&format!("container {name}: {rule}"));
        if context["privileged"] == Value::Bool(true) {
            fail_in("privileged must not be true");
        }
        if context["windowsOptions"]["hostProcess"] == Value::Bool(true) {
            fail_in("HostProcess must not be true");
        }
        if context["allowPrivilegeEscalation"] != Value::Bool(false) {
            fail_in("privilege escalation: allowPrivilegeEscalation must be false");
        }
        match &context["runAsNonRoot"] {
            Value::Bool(false) => fail_in("running as non-root: runAsNonRoot is false"),
            Value::Null if !pod_non_root => {
                fail_in("running as non-root: runAsNonRoot is set neither here nor on the pod")
            }
            _ => {}
        }
        if context["runAsUser"] == 0 {
            fail_in("running as non-root user: runAsUser must not be 0");
        }
        match seccomp_type(&context["seccompProfile"]) {
            Some("RuntimeDefault" | "Localhost") => {}
            Some(other) => fail_in(&format!("seccomp: profile {other}")),
            None if pod_seccomp.is_none() => fail_in("seccomp: no profile here nor on the pod"),
            None => {}
        }
        let capabilities = &context["capabilities"];
        if !array(&capabilities["drop"]).iter().any(|c| *c == "ALL") {
            fail_in("capabilities: drop must contain ALL");
        }
        for added in array(&capabilities["add"]) {
            if added != "NET_BIND_SERVICE" {
                fail_in(&format!("capabilities: adds {added}"));
            }
        }
        for port in array(&container["ports"]) {
            if port["hostPort"].as_i64().is_some_and(|p| p != 0) {
                fail_in("host ports: hostPort must be unset or 0");
            }
        }
        let proc_mount = context["procMount"].as_str().unwrap_or("Default");
        if proc_mount != "Default" {
            fail_in(&format!("/proc mount type {proc_mount}"));
        }
        check_selinux(&context["seLinuxOptions"], name, &mut fail_in);
        check_apparmor(&context["appArmorProfile"], name, &mut fail_in);
    }
    if count == 0 {
        fail("no containers");
    }
    out
}

fn array(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn seccomp_type(profile: &Value) -> Option<&str> {
    profile["type"].as_str()
}

fn check_selinux(options: &Value, whose: &str, fail: &mut impl FnMut(&str)) {
    let kind = options["type"].as_str().unwrap_or_default();
    if !SELINUX_TYPES.contains(&kind) {
        fail(&format!("SELinux: {whose} type {kind}"));
    }
    for field in ["user", "role"] {
        if !options[field].is_null() {
            fail(&format!("SELinux: {whose} sets {field}"));
        }
    }
}

fn check_apparmor(profile: &Value, whose: &str, fail: &mut impl FnMut(&str)) {
    if let Some(kind) = profile["type"].as_str()
        && !["RuntimeDefault", "Localhost"].contains(&kind)
    {
        fail(&format!("AppArmor: {whose} profile {kind}"));
    }
}

/// Every pod template in `object` (a Deployment, StatefulSet, Job… or a Pod itself), with its
/// annotations: `(path, pod spec, annotations)`.
pub fn pod_templates(object: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    collect(object, "", &mut out);
    out
}

fn collect(value: &Value, path: &str, out: &mut Vec<(String, Value, Value)>) {
    match value {
        Value::Object(map) => {
            if let Some(spec) = map.get("spec")
                && spec.get("containers").is_some()
            {
                let annotations = map
                    .get("metadata")
                    .map(|m| m["annotations"].clone())
                    .unwrap_or(Value::Null);
                out.push((format!("{path}/spec"), spec.clone(), annotations));
            }
            for (key, child) in map {
                collect(child, &format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                collect(child, &format!("{path}/{index}"), out);
            }
        }
        _ => {}
    }
}
