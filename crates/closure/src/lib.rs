//! Placeholder: filled by the closure work item.
