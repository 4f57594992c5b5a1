shout <- function(text) paste0(toupper(text), "!")
