package dicomweb

import "encoding/json"

// Responses in the DICOM JSON Model (PS3.18 F.2): an object keyed by tag (8 uppercase hex
// digits), each attribute {"vr", "Value"}. STOW-RS answers with the Store Instances Response
// Module (PS3.18 I.3, table I.3-1), QIDO-RS with an array of them (qido.go).

// attribute is one DICOM JSON attribute. An attribute without a value is present and empty.
type attribute struct {
	VR    string `json:"vr"`
	Value []any  `json:"Value,omitempty"`
	// InlineBinary and BulkDataURI carry binary values (PS3.18 F.2.7, F.2.6): base64, or where
	// to retrieve it (WADO-RS metadata).
	InlineBinary string `json:"InlineBinary,omitempty"`
	BulkDataURI  string `json:"BulkDataURI,omitempty"`
}

// dataset is a DICOM JSON data set; encoding/json writes its keys sorted, so tags ascend.
type dataset map[string]attribute

const (
	tagRetrieveURL              = "00081190" // UR
	tagFailureReason            = "00081197" // US
	tagFailedSOPSequence        = "00081198" // SQ
	tagReferencedSOPSequence    = "00081199" // SQ
	tagReferencedSOPClassUID    = "00081150" // UI
	tagReferencedSOPInstanceUID = "00081155" // UI
)

func text(vr, v string) attribute {
	if v == "" {
		return attribute{VR: vr}
	}
	return attribute{VR: vr, Value: []any{v}}
}

// responseDataset builds the response: Retrieve URL (0008,1190) of the study — the URL's, or the
// one study every stored instance belongs to —, Referenced SOP Sequence (0008,1199) for the
// stored instances (with each one's Retrieve URL), Failed SOP Sequence (0008,1198) for the
// others with their Failure Reason (0008,1197). Each sequence is present when it has items. A
// failed part whose UIDs could not be read has its UID attributes present and empty.
func responseDataset(base, wantStudy string, results []result) []byte {
	ds := dataset{}
	var referenced, failed []any
	studies := map[string]bool{}
	for _, r := range results {
		item := dataset{
			tagReferencedSOPClassUID:    text("UI", r.sopClass),
			tagReferencedSOPInstanceUID: text("UI", r.sopInstance),
		}
		if r.failure != 0 {
			item[tagFailureReason] = attribute{VR: "US", Value: []any{r.failure}}
			failed = append(failed, item)
			continue
		}
		item[tagRetrieveURL] = text("UR", base+"/studies/"+r.study+"/series/"+r.series+"/instances/"+r.sopInstance)
		referenced = append(referenced, item)
		studies[r.study] = true
	}
	study := wantStudy
	if study == "" && len(studies) == 1 {
		for s := range studies {
			study = s
		}
	}
	if study != "" {
		ds[tagRetrieveURL] = text("UR", base+"/studies/"+study)
	}
	if len(referenced) > 0 {
		ds[tagReferencedSOPSequence] = attribute{VR: "SQ", Value: referenced}
	}
	if len(failed) > 0 {
		ds[tagFailedSOPSequence] = attribute{VR: "SQ", Value: failed}
	}
	return encode(ds)
}

// encode writes a DICOM JSON response: a data set, or an array of them (QIDO-RS).
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("dicomweb: encoding the response: " + err.Error()) // strings, numbers and maps only
	}
	return b
}
