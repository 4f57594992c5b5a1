# Uses an R package that needs a program from the system (jq).
library(phjq)

#* The first element of a JSON array, by jq
#* @get /first
function(json = "[3, 1, 2]") {
  list(first = jsonlite::fromJSON(jq(json, ".[0]")), jq = system2("jq", "--version", stdout = TRUE))
}
