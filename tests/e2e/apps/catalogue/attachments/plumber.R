# Downloads: the browser saves these as files.

#* The current time, as a text file
#* @serializer text
#* @get /time
function() {
  as_attachment(format(Sys.time(), "%Y-%m-%d %H:%M:%S", tz = "UTC"), "time.txt")
}

#* A CSV report of mtcars
#* @serializer csv
#* @get /report
function() {
  as_attachment(head(mtcars), "report.csv")
}
