# An example Plumber API that needs an extra CRAN package (digest), built
# with plumber's programmatic interface from entrypoint.R.
library(plumber)
library(digest)

pr() |>
  pr_get("/health", function() list(status = "ok"), serializer = serializer_unboxed_json()) |>
  pr_get(
    "/sha256",
    function(text = "") list(text = text, sha256 = digest::digest(text, algo = "sha256", serialize = FALSE)),
    serializer = serializer_unboxed_json()
  ) |>
  pr_get(
    "/version",
    function() list(digest = as.character(utils::packageVersion("digest"))),
    serializer = serializer_unboxed_json()
  )
