//! Building a [`Tree`] from host directories: `Tree::graft` and
//! `Tree::from_sources` (mksquashfs's rules for several sources).
