## Open311 GeoReport v2：错误
open311-bad_format = 未知格式：请使用 .json 或 .xml。
open311-api_key_missing = 提交服务请求需要 api_key。
open311-api_key_invalid = api_key 无效：不存在、已过期或已吊销。
open311-api_key_forbidden = 此 api_key 无权提交服务请求（缺少 report_create 权限）。
open311-service_not_found = 未知的服务代码“{ $code }”。
open311-request_not_found = 未找到该服务请求，或您无权查看。
open311-token_not_found = 未找到该令牌。
open311-location_required = 请提供位置：address_id（邻里的地点编号）、lat 和 long，或 address_string。
open311-address_id_required = 此 api_key 不限于某一个社区，无法确定地点：请提供 address_id（邻里的地点编号），或在 address_string 中依次写出地点名称（如“幸福里社区 3栋 2单元”）。
open311-bad_date = { $field } 不是 W3C 日期时间格式（例如 2026-01-01T00:00:00+08:00）。
open311-bad_range = end_date 早于 start_date。
open311-range_too_long = start_date 与 end_date 相隔不得超过 90 天。
open311-bad_status = 未知状态“{ $value }”：请使用 open 或 closed。
open311-unknown_attribute = 此服务没有属性“{ $code }”。
open311-bad_attribute_value = 属性“{ $code }”的取值无效。
open311-form_required = 请以 application/x-www-form-urlencoded 格式提交。
open311-point_in_no_community = 坐标 lat={ $lat }, long={ $long } 不在任何社区的范围内：请核对坐标，或提供 address_id（邻里的地点编号）或 address_string。
open311-point_outside_area = 该坐标位于{ $community }，不在此 api_key 的管辖范围内：请提供范围内的位置。
open311-email_invalid = 电子邮箱地址无效。
open311-phone_invalid = 电话号码无效：请填写大陆手机号（11 位，1[3-9] 开头）。
open311-contact_too_long = { $field } 过长（最多 { $max } 个字符）。

## Open311：服务说明
open311-contact = 运营本邻里平台的社区居委会或街道办事处。
open311-key_service = 请向社区居委会申请具有 report_create 权限的 API 令牌。
open311-kind-public_affair = 报事（公共事务）
open311-kind-repair = 物业报修
open311-kind-complaint = 投诉（不公开）
open311-kind-suggestion = 意见建议
open311-kind-inquiry = 咨询
open311-attr-title = 简短标题
open311-attr-title-format = 文字，最多 100 字；不填则取描述开头。
open311-attr-public = 审核后向邻居公开？
open311-attr-public-format = yes 或 no（默认 no）。
open311-attr-anonymous = 对邻居隐藏报告人？
open311-attr-anonymous-format = yes 或 no（默认 no）。
open311-value-yes = 是
open311-value-no = 否
open311-address = 所填地址
open311-photo = 照片
