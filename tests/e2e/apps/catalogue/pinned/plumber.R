# Pins an older version of a package than the repository's latest.
library(phversion)

#* The version of phversion this API got
#* @get /version
function() {
  list(phversion = which_version())
}
