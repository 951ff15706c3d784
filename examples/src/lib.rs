//! Runnable examples of shmlane live in this folder as `[[example]]` targets.
