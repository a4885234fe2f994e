//! drover.yml and Procfile parsing into a validated AppSpec, with file:line:column errors.
