package hl7

// fieldNames are the names HL7 v2.5.1 gives the fields of the segments Ferry's mappings read and
// write (Chapters 2, 3, 4, 4A, 6, 7), for people reading a message: the analyst console shows
// them on hover. A field not listed has no name here, not an error.
var fieldNames = map[string][]string{
	"MSH": {"", "Field Separator", "Encoding Characters", "Sending Application", "Sending Facility",
		"Receiving Application", "Receiving Facility", "Date/Time of Message", "Security", "Message Type",
		"Message Control ID", "Processing ID", "Version ID", "Sequence Number", "Continuation Pointer",
		"Accept Acknowledgment Type", "Application Acknowledgment Type", "Country Code", "Character Set",
		"Principal Language of Message", "Alternate Character Set Handling Scheme", "Message Profile Identifier"},
	"MSA": {"", "Acknowledgment Code", "Message Control ID", "Text Message", "Expected Sequence Number",
		"Delayed Acknowledgment Type", "Error Condition"},
	"ERR": {"", "Error Code and Location", "Error Location", "HL7 Error Code", "Severity",
		"Application Error Code", "Application Error Parameter", "Diagnostic Information", "User Message"},
	"EVN": {"", "Event Type Code", "Recorded Date/Time", "Date/Time Planned Event", "Event Reason Code",
		"Operator ID", "Event Occurred", "Event Facility"},
	"PID": {"", "Set ID - PID", "Patient ID", "Patient Identifier List", "Alternate Patient ID - PID",
		"Patient Name", "Mother's Maiden Name", "Date/Time of Birth", "Administrative Sex", "Patient Alias",
		"Race", "Patient Address", "County Code", "Phone Number - Home", "Phone Number - Business",
		"Primary Language", "Marital Status", "Religion", "Patient Account Number", "SSN Number - Patient",
		"Driver's License Number - Patient", "Mother's Identifier", "Ethnic Group", "Birth Place",
		"Multiple Birth Indicator", "Birth Order", "Citizenship", "Veterans Military Status", "Nationality",
		"Patient Death Date and Time", "Patient Death Indicator", "Identity Unknown Indicator",
		"Identity Reliability Code", "Last Update Date/Time", "Last Update Facility"},
	"MRG": {"", "Prior Patient Identifier List", "Prior Alternate Patient ID", "Prior Patient Account Number",
		"Prior Patient ID", "Prior Visit Number", "Prior Alternate Visit ID", "Prior Patient Name"},
	"PV1": {"", "Set ID - PV1", "Patient Class", "Assigned Patient Location", "Admission Type",
		"Preadmit Number", "Prior Patient Location", "Attending Doctor", "Referring Doctor", "Consulting Doctor",
		"Hospital Service", "Temporary Location", "Preadmit Test Indicator", "Re-admission Indicator",
		"Admit Source", "Ambulatory Status", "VIP Indicator", "Admitting Doctor", "Patient Type", "Visit Number",
		"Financial Class", "Charge Price Indicator", "Courtesy Code", "Credit Rating", "Contract Code",
		"Contract Effective Date", "Contract Amount", "Contract Period", "Interest Code",
		"Transfer to Bad Debt Code", "Transfer to Bad Debt Date", "Bad Debt Agency Code",
		"Bad Debt Transfer Amount", "Bad Debt Recovery Amount", "Delete Account Indicator",
		"Delete Account Date", "Discharge Disposition", "Discharged to Location", "Diet Type",
		"Servicing Facility", "Bed Status", "Account Status", "Pending Location", "Prior Temporary Location",
		"Admit Date/Time", "Discharge Date/Time", "Current Patient Balance", "Total Charges",
		"Total Adjustments", "Total Payments", "Alternate Visit ID", "Visit Indicator", "Other Healthcare Provider"},
	"ORC": {"", "Order Control", "Placer Order Number", "Filler Order Number", "Placer Group Number",
		"Order Status", "Response Flag", "Quantity/Timing", "Parent", "Date/Time of Transaction", "Entered By",
		"Verified By", "Ordering Provider", "Enterer's Location", "Call Back Phone Number",
		"Order Effective Date/Time", "Order Control Code Reason", "Entering Organization", "Entering Device",
		"Action By", "Advanced Beneficiary Notice Code", "Ordering Facility Name", "Ordering Facility Address",
		"Ordering Facility Phone Number", "Ordering Provider Address", "Order Status Modifier",
		"Advanced Beneficiary Notice Override Reason", "Filler's Expected Availability Date/Time",
		"Confidentiality Code", "Order Type", "Enterer Authorization Mode", "Parent Universal Service Identifier"},
	"OBR": {"", "Set ID - OBR", "Placer Order Number", "Filler Order Number", "Universal Service Identifier",
		"Priority - OBR", "Requested Date/Time", "Observation Date/Time", "Observation End Date/Time",
		"Collection Volume", "Collector Identifier", "Specimen Action Code", "Danger Code",
		"Relevant Clinical Information", "Specimen Received Date/Time", "Specimen Source", "Ordering Provider",
		"Order Callback Phone Number", "Placer Field 1", "Placer Field 2", "Filler Field 1", "Filler Field 2",
		"Results Rpt/Status Chng - Date/Time", "Charge to Practice", "Diagnostic Serv Sect ID", "Result Status",
		"Parent Result", "Quantity/Timing", "Result Copies To", "Parent", "Transportation Mode",
		"Reason for Study", "Principal Result Interpreter", "Assistant Result Interpreter", "Technician",
		"Transcriptionist", "Scheduled Date/Time", "Number of Sample Containers",
		"Transport Logistics of Collected Sample", "Collector's Comment", "Transport Arrangement Responsibility",
		"Transport Arranged", "Escort Required", "Planned Patient Transport Comment", "Procedure Code",
		"Procedure Code Modifier", "Placer Supplemental Service Information",
		"Filler Supplemental Service Information", "Medically Necessary Duplicate Procedure Reason",
		"Result Handling"},
	"OBX": {"", "Set ID - OBX", "Value Type", "Observation Identifier", "Observation Sub-ID",
		"Observation Value", "Units", "References Range", "Abnormal Flags", "Probability",
		"Nature of Abnormal Test", "Observation Result Status", "Effective Date of Reference Range",
		"User Defined Access Checks", "Date/Time of the Observation", "Producer's ID", "Responsible Observer",
		"Observation Method", "Equipment Instance Identifier", "Date/Time of the Analysis"},
	"IPC": {"", "Accession Identifier", "Requested Procedure ID", "Study Instance UID",
		"Scheduled Procedure Step ID", "Modality", "Protocol Code", "Scheduled Station Name",
		"Scheduled Procedure Step Location", "Scheduled AE Title"},
	"TQ1": {"", "Set ID - TQ1", "Quantity", "Repeat Pattern", "Explicit Time", "Relative Time and Units",
		"Service Duration", "Start Date/Time", "End Date/Time", "Priority", "Condition Text",
		"Text Instruction", "Conjunction", "Occurrence Duration", "Total Occurrences"},
	"DG1": {"", "Set ID - DG1", "Diagnosis Coding Method", "Diagnosis Code - DG1", "Diagnosis Description",
		"Diagnosis Date/Time", "Diagnosis Type", "Major Diagnostic Category", "Diagnostic Related Group",
		"DRG Approval Indicator", "DRG Grouper Review Code", "Outlier Type", "Outlier Days", "Outlier Cost",
		"Grouper Version And Type", "Diagnosis Priority", "Diagnosing Clinician"},
	"NTE": {"", "Set ID - NTE", "Source of Comment", "Comment", "Comment Type"},
}

// FieldName is the name HL7 v2.5.1 gives field n of segment seg ("PID", 5 → "Patient Name"), or
// "" when Ferry's table does not have it.
func FieldName(seg string, n int) string {
	names := fieldNames[seg]
	if n <= 0 || n >= len(names) {
		return ""
	}
	return names[n]
}
