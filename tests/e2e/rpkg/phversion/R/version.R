#' The installed version of phversion, as a string.
which_version <- function() as.character(utils::packageVersion("phversion"))
