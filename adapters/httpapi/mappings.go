package httpapi

import (
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/mappings"
)

// MappingTester puts a message through the mappings in force without storing anything:
// *mappings.Set does (through a func, so the set that hot reload swapped in is the one used).
type MappingTester interface {
	Try(raw []byte) (*mappings.TryResult, error)
}

// maxMappingTestBody caps a pasted message.
const maxMappingTestBody = 4 << 20

// mappingsTest is POST /api/v1/mappings/test: the body is one HL7 v2 message (segments ended by
// CR, LF or CRLF); the answer is what the mapping in force for its MSH-4 and MSH-9 makes of it —
// the mapping version and its output, or the error an AE would carry (ERR code, field, text and
// the mapping line). 422 when the message does not parse or no mapping handles it. Nothing is
// stored; the request is audited like every admin read.
func mappingsTest(current func() MappingTester, log *messageLog) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxMappingTestBody+1))
		if err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, "reading the message: "+err.Error())
		}
		if len(body) > maxMappingTestBody {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "the message exceeds 4 MiB")
		}
		if len(body) == 0 {
			return echo.NewHTTPError(http.StatusBadRequest, "post one HL7 v2 message as the request body")
		}
		log.logger.Info("audit: mapping test", "remote", c.RealIP(), "size", len(body))
		res, err := current().Try(body)
		if err != nil {
			// Parse and routing errors describe the header, never field contents.
			return echo.NewHTTPError(http.StatusUnprocessableEntity, err.Error())
		}
		if res == nil {
			return errors.New("mapping test returned nothing")
		}
		return c.JSON(http.StatusOK, res)
	}
}
