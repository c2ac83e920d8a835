//! The committed CRD YAML must equal what the Rust types generate: run
//! `cargo run -p llm-gateway-crds --bin crdgen` after changing a type.

#[test]
fn committed_crd_yaml_is_fresh() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/yaml");
    for (file, generated) in llm_gateway_crds::crd_yaml_files() {
        let committed = std::fs::read_to_string(format!("{dir}/{file}"))
            .unwrap_or_else(|e| panic!("{dir}/{file} is missing ({e}); run crdgen"));
        assert!(
            committed == generated,
            "{dir}/{file} is stale: run `cargo run -p llm-gateway-crds --bin crdgen`"
        );
    }
}

#[test]
fn crds_carry_status_conditions_printer_columns_and_cel_rules() {
    for (file, yaml) in llm_gateway_crds::crd_yaml_files() {
        for needle in [
            "x-kubernetes-list-type: map",
            "subresources:",
            "additionalPrinterColumns:",
            "shortNames:",
            "observedGeneration",
        ] {
            assert!(yaml.contains(needle), "{file} lacks {needle}");
        }
    }
    let files = llm_gateway_crds::crd_yaml_files();
    let provider = &files
        .iter()
        .find(|(f, _)| f.starts_with("llmproviders"))
        .unwrap()
        .1;
    assert!(provider.contains("x-kubernetes-validations"));
    assert!(provider.contains("spec.baseUrl points at a loopback"));
}
