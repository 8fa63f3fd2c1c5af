package mappings

import (
	"embed"
	"io/fs"
)

//go:embed shipped
var shippedFiles embed.FS

// Shipped is the mappings, partials and code tables built into Ferry (mappings/shipped): the
// first layer of every Source. A site's directory overrides them file by file.
func Shipped() fs.FS {
	sub, err := fs.Sub(shippedFiles, "shipped")
	if err != nil {
		panic(err) // the embedded tree always has the directory
	}
	return sub
}
