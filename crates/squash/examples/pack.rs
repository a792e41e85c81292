//! Packs host directories into an image with default options: `pack OUT SRC... [comp] [bs]`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(&args[0]);
    let srcs: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let mut options = mkportable_squash::Options {
        overwrite: true,
        ..Default::default()
    };
    for a in args.iter().filter(|a| a.starts_with('-')) {
        if let Some(c) = a.strip_prefix("-c=") {
            options.compression = mkportable_squash::Compression::parse(c).unwrap();
        }
        if let Some(b) = a.strip_prefix("-b=") {
            options.block_size = mkportable_squash::parse_block_size(b).unwrap();
        }
        if a == "-nofrag" {
            options.fragments = false;
        }
        if a == "-exports" {
            options.exports = true;
        }
    }
    let tree = mkportable_squash::Tree::from_sources(&srcs, false, 0).unwrap();
    let r = mkportable_squash::write_image(&tree, &options, &out).unwrap();
    eprintln!("{r:?}");
}
