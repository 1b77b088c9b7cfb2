"""The tornado portal: pages, badges, health and the build/launch event stream."""
