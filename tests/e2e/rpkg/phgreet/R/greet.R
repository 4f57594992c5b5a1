#' Greet someone, the phgreet way.
greet <- function(name) paste0("Greetings, ", name, ", from phgreet ", utils::packageVersion("phgreet"))
