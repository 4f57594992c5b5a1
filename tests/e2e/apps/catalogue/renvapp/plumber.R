# An API whose packages are locked with renv (renv.lock next to it).
library(phversion)

#* Versions this API runs with
#* @get /versions
function() {
  list(
    phversion = which_version(),
    R = as.character(getRversion()),
    plumber = as.character(packageVersion("plumber")),
    phversion_from = dirname(find.package("phversion"))
  )
}
