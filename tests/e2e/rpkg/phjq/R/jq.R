#' Run a jq filter over JSON text; errors when the jq program is missing.
jq <- function(json, filter = ".") {
  exe <- Sys.which("jq")
  if (!nzchar(exe)) stop("phjq needs the jq program (SystemRequirements: jq); install it with apt-get install jq")
  out <- system2(exe, c("-c", shQuote(filter)), input = json, stdout = TRUE)
  paste(out, collapse = "\n")
}
