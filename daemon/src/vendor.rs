//! The IEEE MAC vendor registry, compiled in at build time. (Filled in.)
