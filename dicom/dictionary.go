package dicom

// The data dictionary this package needs (PS3.6 chapter 6, PS3.7 E.1): the command elements,
// the file meta elements, and the attributes of Modality Worklist identifiers (PS3.4 K.6, IHE
// RAD-5) and of a stored instance's header that Ferry reads. In an implicit VR encoding it gives
// each element its VR; a tag not listed reads as UN, which is fine for values that Ferry only
// passes through. Add a tag here when a handler needs to read one in implicit VR.

// Tags of the command set (PS3.7 E.1) and of attributes the package itself uses.
const (
	TagCommandGroupLength             Tag = 0x00000000
	TagAffectedSOPClassUID            Tag = 0x00000002
	TagRequestedSOPClassUID           Tag = 0x00000003
	TagCommandField                   Tag = 0x00000100
	TagMessageID                      Tag = 0x00000110
	TagMessageIDBeingRespondedTo      Tag = 0x00000120
	TagMoveDestination                Tag = 0x00000600
	TagPriority                       Tag = 0x00000700
	TagCommandDataSetType             Tag = 0x00000800
	TagStatus                         Tag = 0x00000900
	TagOffendingElement               Tag = 0x00000901
	TagErrorComment                   Tag = 0x00000902
	TagErrorID                        Tag = 0x00000903
	TagAffectedSOPInstanceUID         Tag = 0x00001000
	TagRequestedSOPInstanceUID        Tag = 0x00001001
	TagNumberOfRemainingSuboperations Tag = 0x00001020
	TagNumberOfCompletedSuboperations Tag = 0x00001021
	TagNumberOfFailedSuboperations    Tag = 0x00001022
	TagNumberOfWarningSuboperations   Tag = 0x00001023
	TagMoveOriginatorAETitle          Tag = 0x00001030
	TagMoveOriginatorMessageID        Tag = 0x00001031

	TagSpecificCharacterSet Tag = 0x00080005
	TagSOPClassUID          Tag = 0x00080016
	TagSOPInstanceUID       Tag = 0x00080018
	TagAccessionNumber      Tag = 0x00080050
	TagQueryRetrieveLevel   Tag = 0x00080052
	TagModality             Tag = 0x00080060
	TagPatientName          Tag = 0x00100010
	TagPatientID            Tag = 0x00100020
	TagStudyInstanceUID     Tag = 0x0020000D
	TagSeriesInstanceUID    Tag = 0x0020000E

	TagScheduledProcedureStepSequence Tag = 0x00400100

	TagPixelData Tag = 0x7FE00010
)

type dictEntry struct {
	vr      VR
	keyword string
}

// LookupTag returns the VR and keyword of a tag in this package's dictionary.
func LookupTag(tag Tag) (vr VR, keyword string, ok bool) {
	e, ok := dictionary[tag]
	return e.vr, e.keyword, ok
}

var dictionary = map[Tag]dictEntry{
	// Command elements (PS3.7 E.1).
	0x00000000: {VRUL, "CommandGroupLength"},
	0x00000002: {VRUI, "AffectedSOPClassUID"},
	0x00000003: {VRUI, "RequestedSOPClassUID"},
	0x00000100: {VRUS, "CommandField"},
	0x00000110: {VRUS, "MessageID"},
	0x00000120: {VRUS, "MessageIDBeingRespondedTo"},
	0x00000600: {VRAE, "MoveDestination"},
	0x00000700: {VRUS, "Priority"},
	0x00000800: {VRUS, "CommandDataSetType"},
	0x00000900: {VRUS, "Status"},
	0x00000901: {VRAT, "OffendingElement"},
	0x00000902: {VRLO, "ErrorComment"},
	0x00000903: {VRUS, "ErrorID"},
	0x00001000: {VRUI, "AffectedSOPInstanceUID"},
	0x00001001: {VRUI, "RequestedSOPInstanceUID"},
	0x00001002: {VRUS, "EventTypeID"},
	0x00001005: {VRAT, "AttributeIdentifierList"},
	0x00001008: {VRUS, "ActionTypeID"},
	0x00001020: {VRUS, "NumberOfRemainingSuboperations"},
	0x00001021: {VRUS, "NumberOfCompletedSuboperations"},
	0x00001022: {VRUS, "NumberOfFailedSuboperations"},
	0x00001023: {VRUS, "NumberOfWarningSuboperations"},
	0x00001030: {VRAE, "MoveOriginatorApplicationEntityTitle"},
	0x00001031: {VRUS, "MoveOriginatorMessageID"},

	// File meta information (PS3.10 7.1).
	0x00020000: {VRUL, "FileMetaInformationGroupLength"},
	0x00020001: {VROB, "FileMetaInformationVersion"},
	0x00020002: {VRUI, "MediaStorageSOPClassUID"},
	0x00020003: {VRUI, "MediaStorageSOPInstanceUID"},
	0x00020010: {VRUI, "TransferSyntaxUID"},
	0x00020012: {VRUI, "ImplementationClassUID"},
	0x00020013: {VRSH, "ImplementationVersionName"},
	0x00020016: {VRAE, "SourceApplicationEntityTitle"},

	// General, SOP common, study, series.
	0x00080005: {VRCS, "SpecificCharacterSet"},
	0x00080008: {VRCS, "ImageType"},
	0x00080012: {VRDA, "InstanceCreationDate"},
	0x00080013: {VRTM, "InstanceCreationTime"},
	0x00080016: {VRUI, "SOPClassUID"},
	0x00080018: {VRUI, "SOPInstanceUID"},
	0x00080020: {VRDA, "StudyDate"},
	0x00080021: {VRDA, "SeriesDate"},
	0x00080022: {VRDA, "AcquisitionDate"},
	0x00080023: {VRDA, "ContentDate"},
	0x00080030: {VRTM, "StudyTime"},
	0x00080031: {VRTM, "SeriesTime"},
	0x00080032: {VRTM, "AcquisitionTime"},
	0x00080033: {VRTM, "ContentTime"},
	0x00080050: {VRSH, "AccessionNumber"},
	0x00080051: {VRSQ, "IssuerOfAccessionNumberSequence"},
	0x00080052: {VRCS, "QueryRetrieveLevel"},
	0x00080054: {VRAE, "RetrieveAETitle"},
	0x00080056: {VRCS, "InstanceAvailability"},
	0x00080060: {VRCS, "Modality"},
	0x00080061: {VRCS, "ModalitiesInStudy"},
	0x00080064: {VRCS, "ConversionType"},
	0x00080070: {VRLO, "Manufacturer"},
	0x00080080: {VRLO, "InstitutionName"},
	0x00080090: {VRPN, "ReferringPhysicianName"},
	0x00080100: {VRSH, "CodeValue"},
	0x00080102: {VRSH, "CodingSchemeDesignator"},
	0x00080103: {VRSH, "CodingSchemeVersion"},
	0x00080104: {VRLO, "CodeMeaning"},
	0x00080119: {VRUC, "LongCodeValue"},
	0x00080120: {VRUR, "URNCodeValue"},
	0x00080201: {VRSH, "TimezoneOffsetFromUTC"},
	0x00081010: {VRSH, "StationName"},
	0x00081030: {VRLO, "StudyDescription"},
	0x00081032: {VRSQ, "ProcedureCodeSequence"},
	0x0008103E: {VRLO, "SeriesDescription"},
	0x00081040: {VRLO, "InstitutionalDepartmentName"},
	0x00081080: {VRLO, "AdmittingDiagnosesDescription"},
	0x00081090: {VRLO, "ManufacturerModelName"},
	0x00081110: {VRSQ, "ReferencedStudySequence"},
	0x00081111: {VRSQ, "ReferencedPerformedProcedureStepSequence"},
	0x00081120: {VRSQ, "ReferencedPatientSequence"},
	0x00081150: {VRUI, "ReferencedSOPClassUID"},
	0x00081155: {VRUI, "ReferencedSOPInstanceUID"},

	// Patient.
	0x00100010: {VRPN, "PatientName"},
	0x00100020: {VRLO, "PatientID"},
	0x00100021: {VRLO, "IssuerOfPatientID"},
	0x00100024: {VRSQ, "IssuerOfPatientIDQualifiersSequence"},
	0x00100030: {VRDA, "PatientBirthDate"},
	0x00100032: {VRTM, "PatientBirthTime"},
	0x00100040: {VRCS, "PatientSex"},
	0x00101001: {VRPN, "OtherPatientNames"},
	0x00101002: {VRSQ, "OtherPatientIDsSequence"},
	0x00101010: {VRAS, "PatientAge"},
	0x00101020: {VRDS, "PatientSize"},
	0x00101030: {VRDS, "PatientWeight"},
	0x00101040: {VRLO, "PatientAddress"},
	0x00102000: {VRLO, "MedicalAlerts"},
	0x00102110: {VRLO, "Allergies"},
	0x00102160: {VRSH, "EthnicGroup"},
	0x001021B0: {VRLT, "AdditionalPatientHistory"},
	0x001021C0: {VRUS, "PregnancyStatus"},
	0x00104000: {VRLT, "PatientComments"},

	// Acquisition, relationship, image plane.
	0x00180015: {VRCS, "BodyPartExamined"},
	0x00180050: {VRDS, "SliceThickness"},
	0x00180060: {VRDS, "KVP"},
	0x00180088: {VRDS, "SpacingBetweenSlices"},
	0x00181030: {VRLO, "ProtocolName"},
	0x0020000D: {VRUI, "StudyInstanceUID"},
	0x0020000E: {VRUI, "SeriesInstanceUID"},
	0x00200010: {VRSH, "StudyID"},
	0x00200011: {VRIS, "SeriesNumber"},
	0x00200012: {VRIS, "AcquisitionNumber"},
	0x00200013: {VRIS, "InstanceNumber"},
	0x00200020: {VRCS, "PatientOrientation"},
	0x00200032: {VRDS, "ImagePositionPatient"},
	0x00200037: {VRDS, "ImageOrientationPatient"},
	0x00200052: {VRUI, "FrameOfReferenceUID"},
	0x00201041: {VRDS, "SliceLocation"},

	// Image pixel description, modality and VOI LUTs (what a viewer needs from metadata).
	0x00280002: {VRUS, "SamplesPerPixel"},
	0x00280004: {VRCS, "PhotometricInterpretation"},
	0x00280006: {VRUS, "PlanarConfiguration"},
	0x00280008: {VRIS, "NumberOfFrames"},
	0x00280009: {VRAT, "FrameIncrementPointer"},
	0x00280010: {VRUS, "Rows"},
	0x00280011: {VRUS, "Columns"},
	0x00280030: {VRDS, "PixelSpacing"},
	0x00280034: {VRIS, "PixelAspectRatio"},
	0x00280100: {VRUS, "BitsAllocated"},
	0x00280101: {VRUS, "BitsStored"},
	0x00280102: {VRUS, "HighBit"},
	0x00280103: {VRUS, "PixelRepresentation"},
	0x00281050: {VRDS, "WindowCenter"},
	0x00281051: {VRDS, "WindowWidth"},
	0x00281052: {VRDS, "RescaleIntercept"},
	0x00281053: {VRDS, "RescaleSlope"},
	0x00281054: {VRLO, "RescaleType"},
	0x00281055: {VRLO, "WindowCenterWidthExplanation"},
	0x00281056: {VRCS, "VOILUTFunction"},
	0x00282110: {VRCS, "LossyImageCompression"},

	// Requested procedure, visit, scheduled procedure step (Modality Worklist, PS3.4 K.6).
	0x00321032: {VRPN, "RequestingPhysician"},
	0x00321033: {VRLO, "RequestingService"},
	0x00321060: {VRLO, "RequestedProcedureDescription"},
	0x00321064: {VRSQ, "RequestedProcedureCodeSequence"},
	0x00321070: {VRLO, "RequestedContrastAgent"},
	0x00380010: {VRLO, "AdmissionID"},
	0x00380014: {VRSQ, "IssuerOfAdmissionIDSequence"},
	0x00380050: {VRLO, "SpecialNeeds"},
	0x00380300: {VRLO, "CurrentPatientLocation"},
	0x00380500: {VRLO, "PatientState"},
	0x00400001: {VRAE, "ScheduledStationAETitle"},
	0x00400002: {VRDA, "ScheduledProcedureStepStartDate"},
	0x00400003: {VRTM, "ScheduledProcedureStepStartTime"},
	0x00400004: {VRDA, "ScheduledProcedureStepEndDate"},
	0x00400005: {VRTM, "ScheduledProcedureStepEndTime"},
	0x00400006: {VRPN, "ScheduledPerformingPhysicianName"},
	0x00400007: {VRLO, "ScheduledProcedureStepDescription"},
	0x00400008: {VRSQ, "ScheduledProtocolCodeSequence"},
	0x00400009: {VRSH, "ScheduledProcedureStepID"},
	0x00400010: {VRSH, "ScheduledStationName"},
	0x00400011: {VRSH, "ScheduledProcedureStepLocation"},
	0x00400012: {VRLO, "PreMedication"},
	0x00400020: {VRCS, "ScheduledProcedureStepStatus"},
	0x00400026: {VRSQ, "OrderPlacerIdentifierSequence"},
	0x00400027: {VRSQ, "OrderFillerIdentifierSequence"},
	0x00400031: {VRUT, "LocalNamespaceEntityID"},
	0x00400032: {VRUT, "UniversalEntityID"},
	0x00400033: {VRCS, "UniversalEntityIDType"},
	0x00400100: {VRSQ, "ScheduledProcedureStepSequence"},
	0x00400244: {VRDA, "PerformedProcedureStepStartDate"},
	0x00400245: {VRTM, "PerformedProcedureStepStartTime"},
	0x00400253: {VRSH, "PerformedProcedureStepID"},
	0x00400254: {VRLO, "PerformedProcedureStepDescription"},
	0x00400275: {VRSQ, "RequestAttributesSequence"},
	0x00400400: {VRLT, "CommentsOnTheScheduledProcedureStep"},
	0x00400440: {VRSQ, "ProtocolContextSequence"},
	0x00401001: {VRSH, "RequestedProcedureID"},
	0x00401002: {VRLO, "ReasonForTheRequestedProcedure"},
	0x00401003: {VRSH, "RequestedProcedurePriority"},
	0x00401004: {VRLO, "PatientTransportArrangements"},
	0x00401005: {VRLO, "RequestedProcedureLocation"},
	0x00401008: {VRLO, "ConfidentialityCode"},
	0x0040100A: {VRSQ, "ReasonForRequestedProcedureCodeSequence"},
	0x00401010: {VRPN, "NamesOfIntendedRecipientsOfResults"},
	0x00401400: {VRLT, "RequestedProcedureComments"},
	0x00402004: {VRDA, "IssueDateOfImagingServiceRequest"},
	0x00402005: {VRTM, "IssueTimeOfImagingServiceRequest"},
	0x00402008: {VRPN, "OrderEnteredBy"},
	0x00402009: {VRSH, "OrderEntererLocation"},
	0x00402010: {VRSH, "OrderCallbackPhoneNumber"},
	0x00402016: {VRLO, "PlacerOrderNumberImagingServiceRequest"},
	0x00402017: {VRLO, "FillerOrderNumberImagingServiceRequest"},
	0x00402400: {VRLT, "ImagingServiceRequestComments"},
	0x00403001: {VRLO, "ConfidentialityConstraintOnPatientDataDescription"},

	0x7FE00010: {VROW, "PixelData"},
}
