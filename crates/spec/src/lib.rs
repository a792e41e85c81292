//! Placeholder: filled by the spec work item.
