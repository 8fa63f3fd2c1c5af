package engine

import (
	"errors"

	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/mappings"
)

// RenderORU returns what Reports.Render takes for MLLP destinations: a report version's
// ORU^R01 built by the facility's outbound mapping oru_r01 from the mappings in force (current:
// the hot-reloaded set), with that mapping's version. The ORU's times are written in the
// destination's time zone.
func RenderORU(current func() *mappings.Set) func(string, outbox.Destination, *ReportVersion) ([]byte, string, error) {
	return func(facility string, d outbox.Destination, rv *ReportVersion) ([]byte, string, error) {
		o := current().Outbound(facility, "oru_r01")
		if o == nil {
			return nil, "", errors.New("no outbound mapping oru_r01")
		}
		resources := map[string]any{"report": rv.Content, "patient": rv.Patient, "order": rv.Order}
		for role, r := range map[string]map[string]any{"encounter": rv.Encounter, "interpreter": rv.Interpreter, "requester": rv.Requester} {
			if r != nil {
				resources[role] = r
			}
		}
		b, err := o.Render(mappings.OutboundInput{Resources: resources, Message: mappings.OutboundMessage{
			ControlID: rv.ControlID, Time: rv.Time, Version: d.Version, SendingApplication: "FERRY",
			ReceivingApplication: d.ReceivingApplication, ReceivingFacility: d.ReceivingFacility, Zone: d.Zone}})
		return b, o.Version(), err
	}
}
