# The router is built here; helpers and routes live in sibling files.
library(plumber)
source("helpers.R")

pr("routes.R") %>%
  pr_set_serializer(serializer_unboxed_json()) %>%
  pr_set_api_spec(function(spec) {
    spec$info$title <- "Shouting API"
    spec
  })
