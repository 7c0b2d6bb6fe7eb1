## Open311 GeoReport v2: errors
open311-bad_format = Unknown format: ask for .json or .xml.
open311-api_key_missing = An api_key is required to create a service request.
open311-api_key_invalid = Invalid api_key: unknown, expired or revoked.
open311-api_key_forbidden = This api_key may not create service requests (it lacks report_create).
open311-service_not_found = Unknown service_code "{ $code }".
open311-request_not_found = This service request was not found, or you may not see it.
open311-token_not_found = This token was not found.
open311-location_required = A location is required: give address_id (a Linli place id), lat and long, or address_string.
open311-address_id_required = This api_key is not limited to one community, so the location cannot be placed: give address_id (a Linli place id) or an address_string naming the places (e.g. 幸福里社区 3栋 2单元).
open311-bad_date = { $field } is not a W3C date-time (e.g. 2026-01-01T00:00:00+08:00).
open311-bad_range = end_date is before start_date.
open311-range_too_long = start_date and end_date may not be more than 90 days apart.
open311-bad_status = Unknown status "{ $value }": use open or closed.
open311-unknown_attribute = Unknown attribute "{ $code }" for this service.
open311-bad_attribute_value = Invalid value for attribute "{ $code }".
open311-form_required = Send the request as application/x-www-form-urlencoded.
open311-point_in_no_community = The point lat={ $lat }, long={ $long } lies in no community's area: check the coordinates, or give address_id (a Linli place id) or an address_string.
open311-point_outside_area = The point lies in { $community }, outside this api_key's area: give a location inside it.
open311-email_invalid = Invalid email address.
open311-phone_invalid = Invalid phone: a mainland mobile number (11 digits, 1[3-9]…) is expected.
open311-contact_too_long = { $field } is too long (at most { $max } characters).

## Open311: service descriptions
open311-contact = The community committee or street office that runs this Linli installation.
open311-key_service = Ask your community committee for an API token with the report_create permission.
open311-kind-public_affair = Public affairs (报事)
open311-kind-repair = Property repairs (物业报修)
open311-kind-complaint = Complaints (never published)
open311-kind-suggestion = Suggestions
open311-kind-inquiry = Inquiries
open311-attr-title = Short title
open311-attr-title-format = Text, at most 100 characters; the start of the description when absent.
open311-attr-public = Show to neighbours after moderation?
open311-attr-public-format = yes or no (default no).
open311-attr-anonymous = Hide the reporter from neighbours?
open311-attr-anonymous-format = yes or no (default no).
open311-value-yes = Yes
open311-value-no = No
open311-address = Address given
open311-photo = Photo
