//! `counterctl-client` as a dependency: light with its default features.

/// What `cargo tree` lists for the client crate's normal dependencies with `features`.
fn dependencies(features: &[&str]) -> String {
    let mut command = std::process::Command::new(env!("CARGO"));
    command
        .args(["tree", "--locked", "--offline", "-p", "counterctl-client", "-e", "normal", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let output = command.output().expect("cargo runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn with_default_features_the_client_builds_no_aws_sdk_service_crate() {
    let tree = dependencies(&[]);
    assert!(tree.lines().any(|line| line.starts_with("counter-function ")), "{tree}");
    let sdk: Vec<&str> =
        tree.lines().filter(|line| line.starts_with("aws-sdk-") || line.starts_with("aws-config ")).collect();
    assert_eq!(sdk, [] as [&str; 0], "{tree}");
    // The credential chain is the one optional part that brings them.
    assert!(dependencies(&["aws-config"]).lines().any(|line| line.starts_with("aws-config ")));
}
