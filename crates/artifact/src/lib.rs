//! Slug build and content-addressed artifact storage.
