//! The documents stay true: README shows the example configuration exactly as shipped,
//! and that file is a valid configuration.

use std::path::Path;

use flotilla_core::ship::tree::ConfigTree;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn readme_shows_the_example_configuration_verbatim() {
    let conf = read("examples/ship.conf");
    let readme = read("README.md");
    assert!(
        readme.contains(conf.trim_end()),
        "README.md no longer shows examples/ship.conf as it is"
    );
    let tree = ConfigTree::parse(&conf).expect("the example configuration parses");
    assert_eq!(tree.get("render/port").unwrap(), "7000");
}
